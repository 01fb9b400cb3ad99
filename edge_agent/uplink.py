"""paho-mqtt 2.x adapter behind the ``Uplink`` port.

- MQTT 5, ``CallbackAPIVersion.VERSION2``, fixed client id with a persistent session
  (``clean_start=False``, session expiry), so labels published while the device was offline are
  delivered when it reconnects.
- Last Will = retained ``status`` with ``online=False``; a retained ``online=True`` is published
  on every connect and a retained offline status on a clean stop.
- Subscriptions are made in ``on_connect`` so a reconnect re-subscribes.
- paho callbacks run on its network thread and only hand work to the asyncio loop with
  ``call_soon_threadsafe``: QoS 1 acknowledgements and inbound messages.
- paho keeps unacknowledged QoS 1 messages and retransmits them after a reconnect; the agent
  therefore hands a row over once and waits for its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.broker_url import parse_broker_url

_LOGGER = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600
MAX_INBOUND = 1000  # messages queued for the agent before new ones are dropped


class MqttUplink:
    """The agent's MQTT connection.

    Parameters
    ----------
    url : str
        Broker URL (see :func:`parse_broker_url`).
    client_id : str
        MQTT client id (the device id).
    will_topic : str
        Retained status topic; the Last Will (``will_payload``) goes there.
    will_payload, online_payload : bytes
        Encoded offline / online status.
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
        will_payload: bytes,
        online_payload: Callable[[], bytes],
        subscriptions: list[str],
        loop: asyncio.AbstractEventLoop,
        keepalive_s: int = 30,
    ) -> None:
        host, port, tls, user, pw = parse_broker_url(url)
        self._host, self._port, self._keepalive = host, port, keepalive_s
        self._loop = loop
        self._status_topic = will_topic
        self._online_payload = online_payload
        self._subs = subscriptions
        self._connected = threading.Event()
        self._acks: dict[int, Callable[[bool], None]] = {}
        self._inbound: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_INBOUND)
        self.dropped_inbound = 0
        self.refused = 0
        self.connects = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, pw)
        if tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(will_topic, will_payload, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self._client = c

    def add_subscriptions(self, topics: list[str]) -> None:
        """More topics to subscribe on every connect (call before ``start``)."""
        self._subs = [*self._subs, *topics]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying until ``stop``)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self._host, self._port, self._keepalive, clean_start=False, properties=props
        )
        self._client.loop_start()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected; False on timeout."""
        return await asyncio.to_thread(self._connected.wait, timeout_s)

    def stop(self, offline_payload: bytes | None = None) -> None:
        """Publish the offline status (if given and connected), then disconnect cleanly."""
        if offline_payload is not None and self._connected.is_set():
            info = self._client.publish(self._status_topic, offline_payload, qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError) as exc:
                _LOGGER.warning("offline status not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        """True while the broker session is up."""
        return self._connected.is_set()

    # -- publishing (event loop thread) ----------------------------------------------------

    def publish_reliable(self, topic: str, payload: bytes, on_ack: Callable[[bool], None]) -> bool:
        """QoS 1 publish; ``on_ack`` runs on the loop when the broker answered."""
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            _LOGGER.warning("publish to %s refused locally: %s", topic, mqtt.error_string(info.rc))
            return False
        # paho queued it (NO_CONN means the link dropped just now: it is resent on reconnect)
        self._acks[info.mid] = on_ack
        return True

    def resubscribe(self, topic_filter: str) -> None:
        """Subscribe ``topic_filter`` again: the broker re-sends its retained messages (a
        release the device missed)."""
        if self._connected.is_set():
            self._client.subscribe(topic_filter, qos=1)

    def publish_live(self, topic: str, payload: bytes) -> None:
        """QoS 0, dropped while disconnected (a live plot has no use for old samples)."""
        if self._connected.is_set():
            self._client.publish(topic, payload, qos=0)

    def publish_status(self, payload: bytes) -> None:
        """Retained QoS 1 status, only while connected."""
        if self._connected.is_set():
            self._client.publish(self._status_topic, payload, qos=1, retain=True)

    async def inbound(self) -> AsyncIterator[tuple[str, bytes]]:
        """Messages of the subscribed topics."""
        while True:
            yield await self._inbound.get()

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            _LOGGER.error("broker refused the connection: %s", reason_code)
            return
        self.connects += 1
        _LOGGER.info(
            "connected to %s:%d (session present: %s)",
            self._host,
            self._port,
            flags.session_present,
        )
        client.publish(self._status_topic, self._online_payload(), qos=1, retain=True)
        for topic in self._subs:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        _LOGGER.warning("disconnected from the broker: %s", reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self._acked, mid, not reason_code.is_failure)

    def _acked(self, mid: int, ok: bool) -> None:
        cb = self._acks.pop(mid, None)
        if cb is None:
            return  # status or QoS 0 message
        if not ok:
            self.refused += 1
        cb(ok)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._loop.call_soon_threadsafe(self._enqueue, msg.topic, bytes(msg.payload))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        try:
            self._inbound.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.dropped_inbound += 1
            _LOGGER.warning("inbound queue full: dropped a message on %s", topic)
