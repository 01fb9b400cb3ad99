"""The aggregator's :class:`~cloud_aggregator.grid.Grid` over the shared MQTT adapter.

:class:`~transport.mqtt.MqttConnection` does the MQTT work (protocol 5 or 3.1.1, TLS,
reconnects, re-subscription); this adds what the aggregator needs on top:

- a persistent session (fixed client id, session expiry) with manual acknowledgement, so an
  update is acknowledged only after the store has it and a killed aggregator gets the
  unacknowledged ones again after a restart;
- a bounded inbound queue drained by the service's thread (:meth:`PahoBroker.get`);
- an ``on_reconnect`` hook after every (re)connect, so the service re-publishes its retained
  state (a restarted broker without persistence has forgotten it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cloud_aggregator.grid import Inbound
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import BrokerUnavailableError, mqtt_settings

__all__ = ["BrokerUnavailableError", "Inbound", "PahoBroker"]

SESSION_EXPIRY_S = 3600
MAX_QUEUE = 100_000


class PahoBroker:
    """A connected MQTT client with an inbound queue: the MQTT Grid.

    ``connection`` is the :class:`~transport.mqtt.MqttConnection` (protocol spoken, connects),
    ``inbound`` the queue (``inbound.dropped``: messages dropped when it was full).

    Parameters
    ----------
    url : str
        Broker URL (:func:`transport.settings.mqtt_settings`: TLS files and protocol as options).
    client_id : str
        Fixed MQTT client id (persistent session).
    subscriptions : sequence of str
        Topic filters (``$share/...`` ones are shared on MQTT 5 only; on 3.1.1 every replica
        gets every message).
    ca_file : str, optional
        CA bundle for ``mqtts://`` (overrides the URL's ``ca``).
    on_reconnect : callable, optional
        Called on the network thread after every successful (re)connect; must only enqueue.
    clean_start : bool
        A new session on every connect instead of the persistent one.
    manual_ack : bool
        Acknowledge inbound QoS 1 messages only in :meth:`ack`.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: Sequence[str] = (),
        *,
        ca_file: str | None = None,
        on_reconnect: Callable[[], None] | None = None,
        clean_start: bool = False,
        manual_ack: bool = True,
    ) -> None:
        settings = mqtt_settings(
            url,
            client_id,
            ca_file=ca_file,
            clean=clean_start,
            session_expiry_s=SESSION_EXPIRY_S,
            manual_ack=manual_ack,
            keepalive_s=15,
            reconnect_max_s=10.0,
            max_queued=10_000,
        )
        self.inbound: QueueInbox[Inbound] = QueueInbox(MAX_QUEUE, "aggregator inbound")
        self.connection = MqttConnection(
            settings, subscriptions, on_message=self._on_message, on_connected=on_reconnect
        )

    def _on_message(self, m: Message) -> None:
        # Not acknowledged if dropped (queue full): the broker redelivers it after a reconnect.
        self.inbound.put(Inbound(m.topic, m.payload, m.mid, m.qos, m.retain))

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (MQTT 5, else 3.1.1) and start the network thread.

        Raises
        ------
        BrokerUnavailableError
            If no connection is made within ``timeout_s`` or the broker refuses credentials.
        """
        self.connection.connect(timeout_s)

    def stop(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        self.connection.stop()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
        timeout_s: float = 10.0,
    ) -> bool:
        """Publish and wait up to ``timeout_s`` s for the acknowledgement; False on timeout,
        refusal or error. ``expiry_s`` (s) sets the MQTT 5 message expiry interval.

        paho keeps an unacknowledged QoS 1 message and re-sends it after a reconnect, so a
        False return does not mean the message is lost — only that it is not confirmed yet.
        """
        return self.connection.publish_wait(
            topic, payload, qos=qos, retain=retain, expiry_s=expiry_s, timeout_s=timeout_s
        )

    def get(self, timeout_s: float) -> Inbound | None:
        """Next inbound message, or None after ``timeout_s``."""
        return self.inbound.get(timeout_s)

    def ack(self, msg: Inbound) -> None:
        """Acknowledge a QoS 1 message once it is safely handled (no-op for QoS 0)."""
        self.connection.ack(msg.mid, msg.qos)
