"""MQTT replay mode: raw samples on ``medchain/v1/raw/{client_id}`` over the shared MQTT adapter.

:class:`MqttReplayPublisher` plays any source (typically a WFDB record) onto the topic;
:class:`MqttReplaySource` subscribes and yields the chunks again, as the edge agent's source.
:class:`~transport.mqtt.MqttConnection` does the MQTT work (clean session with a random client
id; protocol 5 or 3.1.1, TLS and credentials from the URL; reconnects and re-subscribes); its
callbacks only hand messages and acknowledgements to the asyncio loop. Bad payloads are logged
and counted; ``seq`` gaps and repeats are detected (:mod:`seq_check`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from common.payloads import decode_chunk, encode_chunk
from common.protocol import Channel, ProtocolError, check_client_id, client_topic
from common.types import SignalChunk
from firmware_bridge.seq_check import SeqChecker
from firmware_bridge.sources import Source, SourceStats
from transport.inbox import LoopInbox, Message, hand_to_loop
from transport.mqtt import MqttConnection
from transport.settings import BrokerUnavailableError, mqtt_settings, random_client_id

_LOGGER = logging.getLogger(__name__)

__all__ = ["DEFAULT_BROKER", "BrokerUnavailableError", "MqttReplayPublisher", "MqttReplaySource"]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
MAX_IN_FLIGHT = 150  # chunks published but not yet acknowledged, at "max" speed


def _connection(
    url: str, name: str, subscriptions: Sequence[str] = (), inbox: LoopInbox[Message] | None = None
) -> MqttConnection:
    """A clean session with a throw-away client id ``name-xxxxxxxx``."""
    settings = mqtt_settings(url, random_client_id(name), max_inflight=100)
    return MqttConnection(settings, subscriptions, on_message=inbox.put if inbox else None)


async def _connect(conn: MqttConnection, what: str, timeout_s: float) -> None:
    """Start ``conn`` and wait (in a thread) until it is up and subscribed; else stop it and
    raise :class:`BrokerUnavailableError` naming ``what``."""
    conn.start()
    if not await asyncio.to_thread(conn.wait_connected, timeout_s):
        await asyncio.to_thread(conn.stop)
        raise BrokerUnavailableError(f"{what} within {timeout_s:g} s")
    if conn.refused_filters:
        await asyncio.to_thread(conn.stop)
        raise BrokerUnavailableError(f"{what}: the broker refused {conn.refused_filters}")


class MqttReplaySource:
    """Subscribe to ``medchain/v1/raw/{client_id}`` and yield the chunks.

    Parameters
    ----------
    client_id : str
        Device id whose raw stream to follow.
    broker_url : str
        ``mqtt://host:port`` (``mqtts://`` for TLS, credentials and options in the URL).
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
        self._broker = mqtt_settings(broker_url, client_id).label  # fails early on a bad URL
        self.topic = client_topic(Channel.RAW, client_id)
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_queue = max_queue
        self.checker = SeqChecker()
        self._stats = SourceStats()
        self._bad_payloads = 0
        self._inbox: LoopInbox[Message] | None = None
        self._conn: MqttConnection | None = None

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
        return f"mqtt:{self.client_id} @ {self._broker}"

    @property
    def dropped(self) -> int:
        """Messages dropped because the consumer fell behind (queue full)."""
        return self._inbox.dropped if self._inbox is not None else 0

    @property
    def stats(self) -> SourceStats:
        """Counters (``rejected`` = bad payloads and queue overflow)."""
        s, c = self._stats, self.checker
        s.gaps, s.missing_samples, s.duplicates = c.gaps, c.missing_samples, c.duplicates
        s.rejected = self._bad_payloads + self.dropped
        return s

    async def __aenter__(self) -> Self:
        self._inbox = LoopInbox(asyncio.get_running_loop(), self.max_queue, self.name)
        self._conn = _connection(
            self.broker_url, f"medchain-raw-{self.client_id}", [self.topic], self._inbox
        )
        await _connect(self._conn, f"{self.name}: not subscribed", self.connect_timeout_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.stop)
            self._conn = None
        _LOGGER.info("%s closed: %s", self.name, self.stats.as_dict())

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """Yield decoded, continuity-checked chunks (until idle for ``idle_timeout_s``)."""
        if self._inbox is None:
            raise RuntimeError(f"{self.name}: enter the source (async with) first")
        while True:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), self.idle_timeout_s)
            except TimeoutError:
                _LOGGER.info("%s: idle for %s s, ending", self.name, self.idle_timeout_s)
                return
            try:
                sender, chunk = decode_chunk(msg.payload, "raw")
                if sender != self.client_id:
                    raise ProtocolError(f"payload names client {sender!r}, topic {msg.topic!r}")
            except ProtocolError as exc:
                self._bad_payloads += 1
                _LOGGER.warning(
                    "%s: bad raw payload (%d B) skipped: %s", self.name, len(msg.payload), exc
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
        self._broker = mqtt_settings(broker_url, client_id).label  # fails early on a bad URL
        self.topic = client_topic(Channel.RAW, client_id)
        self.connect_timeout_s = connect_timeout_s
        self.published = 0
        self.refused = 0
        self._in_flight = 0
        self._acked = asyncio.Event()

    def _on_ack(self, ok: bool) -> None:  # on the loop
        self._in_flight -= 1
        self.refused += not ok
        self._acked.set()

    async def _until(self, in_flight: int, timeout_s: float) -> bool:
        """Wait until at most ``in_flight`` chunks await their acknowledgement (False: timeout)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._in_flight > in_flight:
            self._acked.clear()
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._acked.wait(), max(0.0, left))
            except TimeoutError:
                return False
        return True

    async def publish(self, source: Source, *, ack_timeout_s: float = 30.0) -> int:
        """Enter ``source``, publish every chunk, wait for the broker's acks; return the count.

        Raises
        ------
        BrokerUnavailableError
            If no session within ``connect_timeout_s`` or acks missing after ``ack_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        self._acked, self._in_flight = asyncio.Event(), 0
        conn = _connection(self.broker_url, f"medchain-pub-{self.client_id}")
        await _connect(conn, f"no MQTT session with {self._broker}", self.connect_timeout_s)
        try:
            async with source:
                async for chunk in source.chunks():
                    self._in_flight += 1
                    if not conn.publish(
                        self.topic,
                        encode_chunk("raw", self.client_id, chunk),
                        on_ack=lambda ok: hand_to_loop(loop, self._on_ack, ok),
                    ):
                        self._in_flight -= 1
                        raise BrokerUnavailableError(f"{self.name}: chunk refused by the client")
                    self.published += 1
                    if not await self._until(MAX_IN_FLIGHT, ack_timeout_s):
                        raise BrokerUnavailableError(f"{self.name}: no acknowledgement in time")
            if not await self._until(0, ack_timeout_s):
                raise BrokerUnavailableError(f"{self._in_flight} messages not acknowledged in time")
        finally:
            await asyncio.to_thread(conn.stop)
        if self.refused:
            _LOGGER.warning("%s: the broker refused %d chunks", self.name, self.refused)
        _LOGGER.info("published %d chunks to %s", self.published, self.topic)
        return self.published

    @property
    def name(self) -> str:
        """Description for logs."""
        return f"mqtt:{self.client_id} -> {self._broker}"
