"""Durable intake from a NATS cluster: JetStream pull consumers shared by the replicas (nats-py).

:class:`JetStreamIntake` reads the consumers planned by
:func:`~cloud_aggregator.nats_intake.plan_intake` on the cluster's ``$MQTT_msgs`` stream and
hands each message to a sink as an :class:`~cloud_aggregator.grid.Inbound`; :meth:`ack`
acknowledges it. It keeps at most :data:`PREFETCH` messages of a consumer in hand, and tells the
cluster every ``ack_wait_s / 3`` s that it is still working on each of them, so the cluster
hands a message to another replica only when this process has died (or stopped, which naks
what it held so that happens at once).

nats-py is asyncio: everything here runs on the intake's own event-loop thread; :meth:`ack`
may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from cloud_aggregator.grid import Inbound
from cloud_aggregator.nats_intake import MQTT_STREAM, Intake, NatsGridAddress, topic_of
from common import protocol as proto

_LOGGER = logging.getLogger(__name__)

PREFETCH = 64  # messages of one consumer held by this process (queued or being handled)
FETCH_WAIT_S = 3.0  # one pull request waits at most this long for a message
FETCH_MORE_S = 0.02  # after a message, how long to wait for more already on their way
MID_BASE = 1 << 20  # mids of JetStream messages (MQTT packet ids are < 65536)


class JetStreamIntake:
    """Durable pull consumers feeding a sink (see the module docstring).

    Parameters
    ----------
    address : NatsGridAddress
        Nodes, credentials and the acknowledgement wait of the consumers it creates.
    name : str
        Connection name (the replica's).
    intakes : list of Intake
        The consumers.
    sink : callable
        Receives each message; called on the loop thread, must not block.
    ca_file : str, optional
        CA bundle for ``tls://`` nodes.
    """

    def __init__(
        self,
        address: NatsGridAddress,
        name: str,
        intakes: list[Intake],
        sink: Callable[[Inbound], None],
        ca_file: str | None = None,
    ) -> None:
        self.address, self.name, self.intakes, self.sink = address, name, intakes, sink
        self.ca_file = ca_file
        self.ack_wait_s = address.ack_wait_s  # the consumers' own, once bound
        self.redelivered = 0  # messages another replica (or this one) had been given before
        self.fetch_errors = 0
        self._held: dict[int, tuple[str, Msg]] = {}  # mid -> (consumer, message)
        self._holding: dict[str, int] = {i.durable: 0 for i in intakes}
        self._lock = threading.Lock()
        self._mids = itertools.count(MID_BASE)
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, timeout_s: float) -> None:
        """Connect, create (or bind to) the consumers and start pulling; raises on failure."""
        self._thread.start()
        self._run(self._open(timeout_s), timeout_s + 5.0)

    def stop(self) -> None:
        """Nak what is held (another replica gets it at once), disconnect, end the thread."""
        self._stopping = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._close(), 10.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def connected(self) -> bool:
        """True while connected to a node."""
        return bool(self._nc is not None and self._nc.is_connected)

    def ack(self, mid: int) -> bool:
        """Acknowledge message ``mid`` (sent, not awaited: if it is lost, the message comes back
        and the idempotent store keeps one copy); False when ``mid`` is not one of ours."""
        with self._lock:
            held = self._held.pop(mid, None)
            if held is not None:
                self._holding[held[0]] -= 1
        if held is None:
            return False
        if not self._stopping:
            asyncio.run_coroutine_threadsafe(_quietly(held[1].ack()), self._loop)
        return True

    # ------------------------------------------------------------------ loop thread
    def _run(self, coro: Coroutine[Any, Any, None], timeout_s: float) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _open(self, timeout_s: float) -> None:
        tls = None
        if any(s.startswith("tls://") for s in self.address.servers):
            tls = ssl.create_default_context(cafile=self.ca_file or None)
        self._nc = await nats.connect(
            list(self.address.servers),
            name=self.name,
            user=self.address.user,
            password=self.address.password,
            tls=tls,
            connect_timeout=2,
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            error_cb=_log_error,
            disconnected_cb=_log_state("disconnected from NATS"),
            reconnected_cb=_log_state("reconnected to NATS"),
        )
        js = self._nc.jetstream(timeout=5.0)
        deadline = self._loop.time() + timeout_s
        for intake in self.intakes:
            sub = await self._bind(js, intake, deadline)
            self._tasks.append(asyncio.create_task(self._pull(intake, sub)))
        if self.intakes:
            self._tasks.append(asyncio.create_task(self._heartbeat()))

    async def _bind(
        self, js: JetStreamContext, intake: Intake, deadline: float
    ) -> JetStreamContext.PullSubscription:
        """Create the durable consumer unless it exists; retry while the stream is missing
        (no device has connected to the cluster yet) or the cluster elects a leader."""
        config = ConsumerConfig(
            durable_name=intake.durable,
            filter_subject=intake.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=intake.max_ack_pending,
            max_deliver=-1,
        )
        while True:
            try:
                try:
                    info = await js.consumer_info(MQTT_STREAM, intake.durable)
                except NotFoundError:
                    info = await js.add_consumer(MQTT_STREAM, config)
                if info.config.ack_wait:  # created by another replica, maybe with another wait
                    self.ack_wait_s = min(self.ack_wait_s, float(info.config.ack_wait))
                return await js.pull_subscribe_bind(consumer=intake.durable, stream=MQTT_STREAM)
            except Exception as exc:  # stream not there yet, no leader, a racing replica
                if self._loop.time() > deadline:
                    raise
                _LOGGER.info("consumer %s not ready (%r): retrying", intake.durable, exc)
                await asyncio.sleep(0.5)

    async def _pull(self, intake: Intake, sub: JetStreamContext.PullSubscription) -> None:
        """Keep up to PREFETCH messages of one consumer queued or in hand.

        A long poll for one message returns as soon as it arrives (nats-py's ``fetch`` of a
        batch would wait for the whole batch or the timeout), then whatever else is waiting
        comes in one short batch request.
        """
        pause = 0.1
        while not self._stopping:
            room = min(PREFETCH, intake.max_ack_pending) - self._holding[intake.durable]
            if room <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
            except TimeoutError:  # nats-py raises its own and asyncio's (both subclass it)
                continue
            except Exception as exc:  # reconnecting, a consumer leader election...
                self.fetch_errors += 1
                _LOGGER.warning("fetch from %s failed (%r): retrying", intake.durable, exc)
                await asyncio.sleep(pause)
                pause = min(2 * pause, 2.0)
                continue
            pause = 0.1
            if room > 1:  # the message in hand is kept whatever this brings
                with contextlib.suppress(Exception):
                    msgs += await sub.fetch(room - 1, timeout=FETCH_MORE_S)
            for m in msgs:
                await self._hand_over(intake, m)

    async def _hand_over(self, intake: Intake, m: Msg) -> None:
        try:
            topic = topic_of(m.subject)
        except proto.ProtocolError as exc:  # only if the consumer's filter were changed
            _LOGGER.warning("dropped a message of %s: %s", intake.durable, exc)
            await _quietly(m.term())
            return
        with contextlib.suppress(Exception):
            if m.metadata.num_delivered > 1:
                self.redelivered += 1
        mid = next(self._mids)
        with self._lock:
            self._held[mid] = (intake.durable, m)
            self._holding[intake.durable] += 1
        self.sink(Inbound(topic, bytes(m.data), mid, 1, False))

    async def _heartbeat(self) -> None:
        """Every ack_wait_s / 3: "still working on it" for every message held here."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            with self._lock:
                held = [m for _, m in self._held.values()]
            for m in held:
                await _quietly(m.in_progress())

    async def _close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for _, m in held:
            await _quietly(m.nak())
        if self._nc is not None:
            await _quietly(self._nc.close())


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    """Await a best-effort send (acknowledgement, progress, nak); failures only log."""
    try:
        await coro
    except Exception as exc:  # a redelivery follows; the store is idempotent
        _LOGGER.debug("JetStream acknowledgement not sent: %r", exc)


async def _log_error(exc: Exception) -> None:
    _LOGGER.warning("NATS: %r", exc)


def _log_state(what: str) -> Callable[[], Coroutine[Any, Any, None]]:
    async def log() -> None:
        _LOGGER.info("%s", what)

    return log
