"""The edge agent: asyncio orchestration over injected ports.

One task consumes the signal source (ECG -> beats -> events -> buffer -> ``--out`` file, live
signal to the web); one pushes the buffer's outbox to the broker whenever it is reachable; one
handles inbound messages (clinician labels). Everything is injected, so tests run the whole
agent with fakes or with a real private broker. Its parts: :mod:`edge_agent.outbox`,
:mod:`edge_agent.live_sender`, :mod:`edge_agent.inbound_router`, :mod:`edge_agent.beat_recorder`,
:mod:`edge_agent.agent_status`, :mod:`edge_agent.agent_ports`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

from common.payloads import Status, encode_status
from common.types import BeatPrediction, Event, SignalChunk, StreamKind
from edge_agent.agent_ports import (
    AgentStats,
    AuxMonitor,
    BeatGate,
    BeatLabeler,
    BeatSink,
    SpotChecker,
    WindowMonitor,
)
from edge_agent.agent_status import status_detail
from edge_agent.beat_recorder import BeatRecorder
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.inbound_router import InboundRouter
from edge_agent.live_sender import LiveSender
from edge_agent.outbox import MAX_INFLIGHT_BATCHES, OutboxPump
from edge_agent.pipeline import BeatBatch, EcgPipeline, concat_batches
from edge_agent.ports import ChunkSource, Clock, Participant, SystemClock, Uplink

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "MAX_INFLIGHT_BATCHES",
    "AgentStats",
    "AuxMonitor",
    "BeatGate",
    "BeatLabeler",
    "BeatSink",
    "EdgeAgent",
    "SpotChecker",
    "WindowMonitor",
]


class EdgeAgent:
    """One device's agent.

    Parameters
    ----------
    settings : EdgeSettings
    pipeline : EcgPipeline
        ECG -> classified beats.
    detector : BeatEventDetector
        Beats -> events.
    buffer : SqliteBuffer
        Durable outbox and labelled beats.
    uplink : Uplink, optional
        MQTT connection; None runs offline (everything stays buffered).
    clock : Clock
        Wall clock (status timestamps, live throttling).
    sink : BeatSink, optional
        The ``--out`` file.
    labeler : BeatLabeler, optional
        Replay annotations -> labelled beats for local training.
    aux : AuxMonitor, optional
        PPG/ACC handling.
    participant : Participant, optional
        Federated-learning participant; gets every inbound message that is not a label.
    rhythm : WindowMonitor, optional
        The rhythm (AF) model on 30 s windows (``edge_agent.rhythm.RhythmMonitor``).
    gate : BeatGate, optional
        Holds beats until the rhythm model has judged their signal; unreadable ones go on as Q
        (``edge_agent.quality_gate``), before the event detectors see them.
    spot : SpotChecker, optional
        Spot checks requested on ``control/{client_id}`` (``edge_agent.spot_check``).
    """

    def __init__(
        self,
        settings: EdgeSettings,
        pipeline: EcgPipeline,
        detector: BeatEventDetector,
        buffer: SqliteBuffer,
        uplink: Uplink | None = None,
        clock: Clock | None = None,
        sink: BeatSink | None = None,
        labeler: BeatLabeler | None = None,
        aux: AuxMonitor | None = None,
        participant: Participant | None = None,
        rhythm: WindowMonitor | None = None,
        gate: BeatGate | None = None,
        spot: SpotChecker | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.detector = detector
        self.buffer = buffer
        self.uplink = uplink
        self.clock = clock or SystemClock()
        self.aux = aux
        self.rhythm = rhythm
        self.gate = gate
        self.stats = AgentStats()
        self._cid = settings.client_id
        self._live = LiveSender(settings, uplink, self.clock, self.stats)
        self._wake = asyncio.Event()
        self._outbox = OutboxPump(
            settings, buffer, uplink, self.stats, self._wake, settings.resend_after_s
        )
        self._recorder = BeatRecorder(buffer, self.stats, labeler, sink)
        self._inbound = InboundRouter(
            self._cid, pipeline, buffer, self._outbox, self.stats, spot, participant
        )

    # the parts below live in the recorder and the router, which read them on every use;
    # the app and the benches set some after construction

    @property
    def sink(self) -> BeatSink | None:
        """The ``--out`` file."""
        return self._recorder.sink

    @sink.setter
    def sink(self, value: BeatSink | None) -> None:
        self._recorder.sink = value

    @property
    def labeler(self) -> BeatLabeler | None:
        """Replay annotations -> labelled beats."""
        return self._recorder.labeler

    @labeler.setter
    def labeler(self, value: BeatLabeler | None) -> None:
        self._recorder.labeler = value

    @property
    def spot(self) -> SpotChecker | None:
        """Spot checks: requests come inbound, the ECG goes to it chunk by chunk."""
        return self._inbound.spot

    @spot.setter
    def spot(self, value: SpotChecker | None) -> None:
        self._inbound.spot = value

    @property
    def participant(self) -> Participant | None:
        """The federated participant (the app builds it from the agent); inbound round
        traffic goes to it."""
        return self._inbound.participant

    @participant.setter
    def participant(self, value: Participant | None) -> None:
        self._inbound.participant = value

    def close(self) -> None:
        """Close the ``--out`` file and the buffer (after ``run``)."""
        if self.sink is not None:
            self.sink.close()
        self.buffer.close()

    # -- status payloads (also the uplink's Will) ------------------------------------------

    def status_payload(
        self, online: bool, detail: str = "", session: int = 0, seq: int = 0
    ) -> bytes:
        """Encoded retained status; ``session`` and ``seq`` as the uplink's connection stamps
        them (:class:`common.payloads.Status`)."""
        version = self.pipeline.model_version
        return encode_status(
            Status(self._cid, online, self.clock.now_ns(), version, None, detail, session, seq)
        )

    def status_detail(self) -> str:
        """The device's current state as compact JSON for ``Status.detail``
        (:func:`edge_agent.agent_status.status_detail`)."""
        try:
            counts = self.buffer.counts()
        except sqlite3.Error:  # a failing disk: the status says so through not_buffered
            counts = {}
        hr = self.detector.hr.rate_bpm
        return status_detail(hr, self.stats, counts, self.aux, self.rhythm, self.gate)

    # -- main loop ---------------------------------------------------------------------------

    async def run(
        self,
        source: ChunkSource,
        drain_timeout_s: float = 10.0,
        stop: asyncio.Event | None = None,
    ) -> AgentStats:
        """Process ``source`` to its end, or until ``stop`` is set (SIGTERM/SIGINT); either way
        classify the beats the front end still holds, store them, then send what is buffered
        (up to the timeout) and return the counters."""
        tasks = [asyncio.create_task(self._outbox.run(self.status_detail), name="uplink")]
        if self.uplink is not None:
            tasks.append(asyncio.create_task(self._inbound_loop(), name="inbound"))
        try:
            if stop is None:
                await self._consume(source)
            else:
                await self._consume_until(source, stop)
            self._finish()
            await self._outbox.drain(drain_timeout_s)
        finally:
            tasks += self._inbound.tasks  # a round still training is abandoned
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        self.stats.gaps = self.pipeline.gaps
        _LOGGER.info("agent finished: %s", self.stats.as_dict())
        return self.stats

    async def _consume(self, source: ChunkSource) -> None:
        async for chunk in source.chunks():
            self.handle_chunk(chunk)
            await asyncio.sleep(0)  # let acks, labels and the uplink run between chunks

    async def _consume_until(self, source: ChunkSource, stop: asyncio.Event) -> None:
        consumer = asyncio.create_task(self._consume(source), name="source")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            # chunks are handled synchronously, so the cancellation lands between chunks
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer  # a source error is raised here
        if stop.is_set() and consumer.cancelled():
            self.stats.stopped_by_signal = True
            _LOGGER.info("source %s stopped on request", getattr(source, "name", "?"))

    def handle_chunk(self, chunk: SignalChunk) -> None:
        """Process one chunk synchronously (CPU work only; network happens elsewhere)."""
        t0 = time.perf_counter()
        self.stats.chunks += 1
        if chunk.kind == StreamKind.ECG:
            self.stats.ecg_chunks += 1
            self.stats.ecg_s += chunk.duration_s
            res = self.pipeline.process(chunk)
            events: list[Event] = []
            judged = (
                []
                if self.rhythm is None
                else self.rhythm.process(chunk, [b.sample for b in res.beats])
            )
            beats, batch = self._gated(res.beats, res.batch, res.reset)
            if res.reset:
                events += self.detector.flush()
            events += self.detector.update(beats) + judged
            if self.gate is not None:
                events += self.gate.take_events()
            if self.spot is not None:
                events += self.spot.process(chunk)
            self._store(beats, events, batch)
            self._live.send(chunk)
        elif self.aux is not None:  # PPG, ACC, HR
            self.stats.aux_chunks += 1
            self._store([], self.aux.process(chunk), None)
        else:
            self.stats.ignored_chunks += 1
        self.stats.processing_s += time.perf_counter() - t0

    def _gated(
        self, beats: list[BeatPrediction], batch: BeatBatch, release_all: bool
    ) -> tuple[list[BeatPrediction], BeatBatch]:
        """Beats the quality gate releases (all it holds when ``release_all``)."""
        if self.gate is None:
            return beats, batch
        beats, batch = self.gate.hold(beats, batch)
        if release_all:
            more, more_batch = self.gate.flush()
            beats, batch = beats + more, concat_batches(batch, more_batch)
        return beats, batch

    def _finish(self) -> None:
        res = self.pipeline.flush()
        judged = [] if self.rhythm is None else self.rhythm.flush()
        beats, batch = self._gated(res.beats, res.batch, True)
        events = self.detector.update(beats) + self.detector.flush() + judged
        if self.gate is not None:
            events += self.gate.take_events()
        if self.spot is not None:
            events += self.spot.flush()
        if self.aux is not None:
            events += self.aux.flush()
        self._store(beats, events, batch)

    def _store(
        self, beats: list[BeatPrediction], events: list[Event], batch: BeatBatch | None
    ) -> None:
        if self._recorder.store(beats, events, batch):
            self._wake.set()

    # -- outbox -> broker ----------------------------------------------------------------------

    def flush_outbox(self) -> int:
        """Hand pending rows to the uplink (if connected); returns the payloads handed over."""
        return self._outbox.flush()

    # -- inbound -------------------------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        assert self.uplink is not None
        async for topic, payload in self.uplink.inbound():
            self.handle_inbound(topic, payload)  # never raises: see its docstring

    def handle_inbound(self, topic: str, payload: bytes) -> None:
        """A message on a subscribed topic (:class:`edge_agent.inbound_router.InboundRouter`: never
        raises; a message it cannot use is counted in ``bad_payloads`` and logged)."""
        self._inbound.handle(topic, payload)

    async def inbound_settled(self) -> None:
        """Wait until every message handed to the participant has been handled."""
        await self._inbound.settled()
