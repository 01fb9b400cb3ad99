"""The aggregator on a NATS cluster: durable JetStream intake, MQTT to the devices.

:class:`NatsGrid` is a :class:`~cloud_aggregator.grid.Grid` for ``--broker nats://...``
(rules in :mod:`cloud_aggregator.nats_intake`):

- updates, their chunks, predictions and label receipts come from durable pull consumers on the
  cluster's ``$MQTT_msgs`` stream, shared by the replicas and acknowledged after the service
  stored each message (:class:`~cloud_aggregator.jetstream_intake.JetStreamIntake`): a replica
  that dies (``kill -9``) has its messages handed to another within the acknowledgement wait;
- statuses come from an MQTT subscription (retained ones replayed on connect), and
  announcements, models and receipts are published as MQTT messages (retained where asked)
  through :class:`~transport.mqtt.MqttConnection` on the cluster's MQTT listener. The status
  subscription is QoS 0: NATS backs a QoS 1 subscription with a JetStream consumer, which it
  may fail to create (and so refuse the subscription) while a node is down; a status is
  retained, so the latest one comes back on every reconnect.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Sequence

from cloud_aggregator.grid import Inbound
from cloud_aggregator.jetstream_intake import JetStreamIntake
from cloud_aggregator.nats_intake import parse_nats_url, plan_intake
from transport.inbox import Message
from transport.mqtt import MqttConnection
from transport.settings import BrokerUnavailableError, mqtt_settings

_LOGGER = logging.getLogger(__name__)

MAX_MQTT_BACKLOG = 100_000  # MQTT messages (statuses) queued before new ones are dropped


class NatsGrid:
    """JetStream intake plus MQTT publishing (see the module docstring).

    Takes the arguments of :class:`~cloud_aggregator.mqtt_io.PahoBroker`, so the CLI picks
    either by the URL's scheme (:func:`~cloud_aggregator.nats_intake.grid_class`).

    Parameters
    ----------
    url : str
        ``nats://host:port[,host:port...]?mqtt=mqtt://host:port[&ack_wait=S]``
        (:func:`~cloud_aggregator.nats_intake.parse_nats_url`).
    client_id : str
        The replica's name (MQTT client id, NATS connection name).
    subscriptions : sequence of str
        The service's MQTT filters (:func:`cloud_aggregator.service.subscriptions`), mapped
        by :func:`~cloud_aggregator.nats_intake.plan_intake`.
    ca_file : str, optional
        CA bundle for ``tls://`` nodes and ``mqtts://``.
    on_reconnect : callable, optional
        Called after every MQTT (re)connect (the service re-publishes its retained state).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: Sequence[str] = (),
        *,
        ca_file: str | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.address = parse_nats_url(url)
        intakes, mqtt_filters = plan_intake(list(subscriptions))
        # Bounded: PREFETCH per consumer, MAX_MQTT_BACKLOG for what MQTT brings.
        self.inbound: queue.Queue[Inbound] = queue.Queue()
        self.dropped = 0  # MQTT messages dropped on a full queue
        settings = mqtt_settings(
            self.address.mqtt_url,
            client_id,
            ca_file=ca_file or None,
            clean=True,  # statuses are retained: a fresh subscription replays them
            subscribe_qos=0,
            keepalive_s=15,
            reconnect_max_s=10.0,
            max_queued=10_000,
        )
        self.mqtt = MqttConnection(
            settings, mqtt_filters, on_message=self._on_mqtt, on_connected=on_reconnect
        )
        self.jetstream = JetStreamIntake(
            self.address, client_id, intakes, self.inbound.put_nowait, ca_file
        )

    @property
    def intakes(self) -> list[str]:
        """Names of the durable consumers read."""
        return [i.durable for i in self.jetstream.intakes]

    @property
    def redelivered(self) -> int:
        """Messages taken that the cluster had handed out before (to a replica that died)."""
        return self.jetstream.redelivered

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect MQTT (first: it makes a fresh cluster create its MQTT streams), then
        JetStream, and create or bind the durable consumers.

        Raises
        ------
        BrokerUnavailableError
            If either side is not up within ``timeout_s`` s.
        """
        self.mqtt.connect(timeout_s)
        try:
            self.jetstream.start(timeout_s)
        except Exception as exc:
            self.stop()
            raise BrokerUnavailableError(
                f"no JetStream consumers on {','.join(self.address.servers)} within"
                f" {timeout_s} s: {exc!r}"
            ) from exc

    def stop(self) -> None:
        """Hand held messages back (another replica gets them at once), disconnect."""
        self.jetstream.stop()
        self.mqtt.stop()

    @property
    def connected(self) -> bool:
        """True while both the MQTT and the NATS connections are up."""
        return self.mqtt.connected and self.jetstream.connected

    @property
    def mqtt5(self) -> bool:
        """True on an MQTT 5 connection (NATS 2.9 speaks 3.1.1)."""
        return self.mqtt.mqtt5

    # ------------------------------------------------------------------ Grid
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
        """Publish to the devices over MQTT; True once the broker confirmed it within
        ``timeout_s`` s (False is not lost: an unconfirmed QoS 1 message is sent again after a
        reconnect)."""
        return self.mqtt.publish_wait(
            topic, payload, qos=qos, retain=retain, expiry_s=expiry_s, timeout_s=timeout_s
        )

    def get(self, timeout_s: float) -> Inbound | None:
        """The next message (JetStream or MQTT), or None after ``timeout_s`` s."""
        try:
            return self.inbound.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def ack(self, msg: Inbound) -> None:
        """Acknowledge a handled message to whichever side it came from."""
        if not self.jetstream.ack(msg.mid):
            self.mqtt.ack(msg.mid, msg.qos)

    def _on_mqtt(self, m: Message) -> None:
        """A status (QoS 0, nothing to acknowledge): into the one inbound queue."""
        if self.inbound.qsize() >= MAX_MQTT_BACKLOG:
            self.dropped += 1  # the next retained status replaces it on a reconnect
            if self.dropped & (self.dropped - 1) == 0:
                _LOGGER.warning("inbound queue full: %d MQTT message(s) dropped", self.dropped)
            return
        self.inbound.put(Inbound(m.topic, m.payload, m.mid, m.qos, m.retain))
