"""MQTT replay mode: raw samples on ``medchain/v1/raw/{client_id}`` (paho-mqtt 2.x adapter).

:class:`MqttReplayPublisher` plays any source (typically a WFDB record) onto the topic;
:class:`MqttReplaySource` subscribes and yields the chunks again, as the edge agent's source.
paho callbacks run on paho's network thread and only hand messages to the asyncio loop
(``call_soon_threadsafe``); subscription happens in ``on_connect`` so a reconnect re-subscribes.
Bad payloads are logged and counted; ``seq`` gaps and repeats are detected (:mod:`seq_check`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

from common.broker_url import parse_broker_url
from common.errors import MedchainError
from common.payloads import decode_chunk, encode_chunk
from common.protocol import Channel, ProtocolError, check_client_id, client_topic
from common.types import SignalChunk
from firmware_bridge.seq_check import SeqChecker
from firmware_bridge.sources import Source, SourceStats

_LOGGER = logging.getLogger(__name__)

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


class BrokerUnavailableError(MedchainError):
    """No MQTT session could be established in time."""


def _client(url: str, name: str) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, port, tls, user, password = parse_broker_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}")
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(100)  # only settable before connecting
    client.connect_async(host, port, keepalive=30)
    return client


class MqttReplaySource:
    """Subscribe to ``medchain/v1/raw/{client_id}`` and yield the chunks.

    Parameters
    ----------
    client_id : str
        Device id whose raw stream to follow.
    broker_url : str
        ``mqtt://host:port`` (``mqtts://`` for TLS, credentials in the URL).
    idle_timeout_s : float or None
        End ``chunks()`` after this long without a message (None: never, the edge default).
    connect_timeout_s : float
        ``__aenter__`` fails with :class:`BrokerUnavailableError` if not subscribed by then.
    max_queue : int
        Messages buffered for a slow consumer; beyond it new ones are dropped and counted.
    """

    def __init__(
        self,
        client_id: str,
        broker_url: str = DEFAULT_BROKER,
        *,
        idle_timeout_s: float | None = None,
        connect_timeout_s: float = 10.0,
        max_queue: int = 10_000,
    ) -> None:
        self.client_id = check_client_id(client_id)
        self.broker_url = broker_url
        parse_broker_url(broker_url)  # fail early on a bad URL
        self.topic = client_topic(Channel.RAW, client_id)
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.checker = SeqChecker()
        self._stats = SourceStats()
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_queue)
        self._subscribed = asyncio.Event()
        self._client: Any = None
        self.dropped = 0

    @classmethod
    def from_options(cls, target: str, opts: Mapping[str, Any]) -> MqttReplaySource:
        """Build from ``open_source`` options (``broker``, ``idle_timeout``)."""
        idle = opts.get("idle_timeout", opts.get("idle_timeout_s"))
        return cls(
            target,
            str(opts.get("broker", opts.get("broker_url", DEFAULT_BROKER))),
            idle_timeout_s=None if idle in (None, "") else float(idle),
        )

    @property
    def name(self) -> str:
        """Description for logs."""
        return f"mqtt:{self.client_id} @ {self.broker_url}"

    @property
    def stats(self) -> SourceStats:
        """Counters (``rejected`` = bad payloads and queue overflow)."""
        s, c = self._stats, self.checker
        s.gaps, s.missing_samples, s.duplicates = c.gaps, c.missing_samples, c.duplicates
        return s

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        client = _client(self.broker_url, f"medchain-raw-{self.client_id}")

        def on_connect(cl: Any, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                _LOGGER.warning("%s: broker refused connection: %s", self.name, reason)
                return
            cl.subscribe(self.topic, qos=1)

        def on_subscribe(_cl: Any, _ud: Any, _mid: Any, reasons: Any, _props: Any) -> None:
            if all(not r.is_failure for r in reasons):
                loop.call_soon_threadsafe(self._subscribed.set)

        def on_message(_cl: Any, _ud: Any, msg: Any) -> None:
            loop.call_soon_threadsafe(self._enqueue, msg.topic, bytes(msg.payload))

        def on_disconnect(_cl: Any, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
            _LOGGER.warning("%s: disconnected (%s); paho reconnects", self.name, reason)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.on_disconnect = on_disconnect
        client.loop_start()
        self._client = client
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.connect_timeout_s)
        except TimeoutError:
            self._close()
            raise BrokerUnavailableError(
                f"{self.name}: not subscribed within {self.connect_timeout_s:g} s"
            ) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        _LOGGER.info("%s closed: %s", self.name, self.stats.as_dict())

    def _close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _enqueue(self, topic: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.dropped += 1
            self._stats.rejected += 1

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """Yield decoded, continuity-checked chunks (until idle for ``idle_timeout_s``)."""
        while True:
            try:
                topic, payload = await asyncio.wait_for(self._queue.get(), self.idle_timeout_s)
            except TimeoutError:
                _LOGGER.info("%s: idle for %s s, ending", self.name, self.idle_timeout_s)
                return
            try:
                sender, chunk = decode_chunk(payload, "raw")
                if sender != self.client_id:
                    raise ProtocolError(f"payload names client {sender!r}, topic {topic!r}")
            except ProtocolError as exc:
                self._stats.rejected += 1
                _LOGGER.warning(
                    "%s: bad raw payload (%d B) skipped: %s", self.name, len(payload), exc
                )
                continue
            self._stats.frames += 1
            checked = self.checker.check(chunk)
            if checked is None:
                continue
            self._stats.count_chunk(checked)
            yield checked


class MqttReplayPublisher:
    """Publish the chunks of a source onto ``medchain/v1/raw/{client_id}`` (QoS 1).

    Parameters
    ----------
    client_id : str
        Device id to publish as.
    broker_url : str
        Broker URL.
    connect_timeout_s : float
        Give up (BrokerUnavailableError) if no session by then.
    """

    def __init__(
        self, client_id: str, broker_url: str = DEFAULT_BROKER, *, connect_timeout_s: float = 10.0
    ) -> None:
        self.client_id = check_client_id(client_id)
        self.broker_url = broker_url
        self.topic = client_topic(Channel.RAW, client_id)
        self.connect_timeout_s = connect_timeout_s
        self.published = 0

    async def publish(self, source: Source, *, ack_timeout_s: float = 30.0) -> int:
        """Enter ``source``, publish every chunk, wait for the broker's acks; return the count.

        Raises
        ------
        BrokerUnavailableError
            If no session within ``connect_timeout_s`` or acks missing after ``ack_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        connected = asyncio.Event()
        client = _client(self.broker_url, f"medchain-pub-{self.client_id}")

        def on_connect(_cl: Any, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if not reason.is_failure:
                loop.call_soon_threadsafe(connected.set)

        client.on_connect = on_connect
        client.loop_start()
        infos: list[Any] = []
        try:
            try:
                await asyncio.wait_for(connected.wait(), self.connect_timeout_s)
            except TimeoutError:
                raise BrokerUnavailableError(
                    f"no MQTT session with {self.broker_url} within {self.connect_timeout_s:g} s"
                ) from None
            async with source:
                async for chunk in source.chunks():
                    infos.append(
                        client.publish(
                            self.topic, encode_chunk("raw", self.client_id, chunk), qos=1
                        )
                    )
                    self.published += 1
                    # Keep the in-flight window bounded at "max" speed.
                    while sum(not i.is_published() for i in infos[-200:]) > 150:
                        await asyncio.sleep(0.005)
                    infos = [i for i in infos if not i.is_published()]
            deadline = loop.time() + ack_timeout_s
            while any(not i.is_published() for i in infos):
                if loop.time() > deadline:
                    raise BrokerUnavailableError(f"{len(infos)} messages not acknowledged in time")
                await asyncio.sleep(0.01)
        finally:
            client.disconnect()
            client.loop_stop()
        _LOGGER.info("published %d chunks to %s", self.published, self.topic)
        return self.published
