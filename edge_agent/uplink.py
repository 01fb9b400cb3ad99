"""The agent's :class:`~edge_agent.ports.Uplink` over the shared MQTT adapter.

:class:`~transport.mqtt.MqttConnection` does the MQTT work: MQTT 5, or 3.1.1 when the broker
speaks only that (or the URL says ``?protocol=3.1.1``); TLS and credentials from the URL;
reconnects with backoff and re-subscribes. On top of it the device gets:

- a persistent session (fixed client id = device id, 24 h session expiry on MQTT 5), so labels
  published while the device was offline are delivered when it reconnects;
- the Last Will = retained ``status`` with ``online=False``; a retained ``online=True`` after
  every connect and a retained offline status on a clean stop;
- QoS 1 publishes whose broker acknowledgement runs a callback on the agent's asyncio loop
  (the outbox marks a row sent then); paho keeps unacknowledged messages and re-sends them
  after a reconnect, so the agent hands a row over once and waits for its acknowledgement;
- inbound messages handed to the loop through a bounded queue (dropped and counted when full).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from transport.inbox import LoopInbox, Message, hand_to_loop
from transport.mqtt import MqttConnection
from transport.settings import Will, mqtt_settings
from transport.status_session import StatusBuilder

SESSION_EXPIRY_S = 24 * 3600
MAX_INBOUND = 1000  # messages queued for the agent before new ones are dropped


class MqttUplink:
    """The agent's MQTT connection (``connection``: the :class:`~transport.mqtt.MqttConnection`,
    for the protocol spoken and the connect count).

    Parameters
    ----------
    url : str
        Broker URL (:func:`transport.settings.mqtt_settings`).
    client_id : str
        MQTT client id (the device id).
    will_topic : str
        Retained status topic; the Last Will goes there.
    status : callable
        ``status(online, detail, session, seq) -> payload``: the device's encoded status, as
        the connection stamps it (:class:`transport.mqtt.MqttConnection`).
    subscriptions : list of str
        Topics subscribed (QoS 1) on every connect.
    loop : asyncio.AbstractEventLoop
        The agent's loop; callbacks are delivered on it.
    keepalive_s : int
        MQTT keepalive, s (the broker publishes the Will after 1.5x this).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        will_topic: str,
        status: StatusBuilder,
        subscriptions: list[str],
        loop: asyncio.AbstractEventLoop,
        keepalive_s: int = 30,
    ) -> None:
        settings = mqtt_settings(
            url,
            client_id,
            clean=False,
            session_expiry_s=SESSION_EXPIRY_S,
            keepalive_s=keepalive_s,
            will=Will(will_topic),
        )
        self._loop = loop
        self._inbox: LoopInbox[tuple[str, bytes]] = LoopInbox(loop, MAX_INBOUND, "uplink inbound")
        self.connection = MqttConnection(
            settings, subscriptions, on_message=self._on_message, status=status
        )
        self.refused = 0

    def _on_message(self, m: Message) -> None:
        self._inbox.put((m.topic, m.payload))

    def add_subscriptions(self, topics: list[str]) -> None:
        """More topics to subscribe on every connect (call before ``start``)."""
        self.connection.add_subscriptions(topics)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying until ``stop``)."""
        self.connection.start()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected; False on timeout."""
        return await asyncio.to_thread(self.connection.wait_connected, timeout_s)

    def stop(self, offline_detail: str | None = None) -> None:
        """Publish an offline status saying ``offline_detail`` (if given and connected), then
        disconnect cleanly."""
        self.connection.stop(offline_detail)

    @property
    def connected(self) -> bool:
        """True while the broker session is up."""
        return self.connection.connected

    @property
    def dropped_inbound(self) -> int:
        """Inbound messages dropped on a full queue."""
        return self._inbox.dropped

    # -- publishing (event loop thread) ----------------------------------------------------

    def publish_reliable(self, topic: str, payload: bytes, on_ack: Callable[[bool], None]) -> bool:
        """QoS 1 publish; ``on_ack`` runs on the loop when the broker answered."""
        if not self.connection.connected:
            return False
        return self.connection.publish(
            topic,
            payload,
            qos=1,
            on_ack=lambda ok: hand_to_loop(self._loop, self._acked, on_ack, ok),
        )

    def _acked(self, on_ack: Callable[[bool], None], ok: bool) -> None:
        if not ok:
            self.refused += 1
        on_ack(ok)

    def resubscribe(self, topic_filter: str) -> None:
        """Subscribe ``topic_filter`` again: the broker re-sends its retained messages (a
        release the device missed)."""
        self.connection.subscribe(topic_filter)

    def publish_live(self, topic: str, payload: bytes) -> None:
        """QoS 0, dropped while disconnected (a live plot has no use for old samples)."""
        if self.connection.connected:
            self.connection.publish(topic, payload, qos=0)

    def publish_status(self, online: bool, detail: str) -> None:
        """Retained QoS 1 status, only while connected."""
        self.connection.publish_status(online, detail)

    async def inbound(self) -> AsyncIterator[tuple[str, bytes]]:
        """Messages of the subscribed topics."""
        while True:
            yield await self._inbox.get()
