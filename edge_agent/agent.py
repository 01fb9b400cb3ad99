"""The edge agent: asyncio orchestration over injected ports.

One task consumes the signal source (ECG -> beats -> events -> buffer -> ``--out`` file, live
signal to the web); one pushes the buffer's outbox to the broker whenever it is reachable; one
handles inbound messages (clinician labels). Everything is injected, so tests run the whole
agent with fakes or with a real private broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Protocol

from common.payloads import Status, decode_label, encode_chunk, encode_predictions, encode_status
from common.protocol import Channel, ProtocolError, client_topic, parse_topic
from common.types import BeatPrediction, Event, SignalChunk, StreamKind
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.live import LiveDecimator
from edge_agent.pipeline import BeatBatch, EcgPipeline
from edge_agent.ports import ChunkSource, Clock, Participant, SystemClock, Uplink

_LOGGER = logging.getLogger(__name__)

MAX_INFLIGHT_BATCHES = 10  # pred payloads handed to MQTT and not yet acknowledged


class BeatSink(Protocol):
    """Where every beat and event is also written (the ``--out`` JSON-lines file)."""

    def write(self, beats: list[BeatPrediction], events: list[Event]) -> None: ...

    def close(self) -> None: ...


class BeatLabeler(Protocol):
    """Reference labels for detected beats (replay annotations), None where unknown."""

    def labels_for(self, samples: list[int]) -> list[str | None]: ...


class WindowMonitor(Protocol):
    """ECG windows + the R peaks found in them -> events (the rhythm/AF model)."""

    def process(self, chunk: SignalChunk, peaks: list[int], lead: int = 0) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


class AuxMonitor(Protocol):
    """Non-ECG streams (wrist PPG + ACC): heart rate, activity, falls, inactivity."""

    def process(self, chunk: SignalChunk) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


@dataclass
class AgentStats:
    """Counters of one run (logged at the end, printed by the CLI as JSON)."""

    chunks: int = 0
    ecg_chunks: int = 0
    aux_chunks: int = 0
    ignored_chunks: int = 0
    beats: int = 0
    events: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)
    labels_annotation: int = 0
    labels_clinician: int = 0
    labels_unmatched: int = 0
    bad_payloads: int = 0
    live_payloads: int = 0
    pred_payloads: int = 0
    pred_refused: int = 0
    gaps: int = 0
    models_installed: int = 0
    models_rejected: int = 0
    stopped_by_signal: bool = False
    processing_s: float = 0.0
    source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.detector = detector
        self.buffer = buffer
        self.uplink = uplink
        self.clock = clock or SystemClock()
        self.sink = sink
        self.labeler = labeler
        self.aux = aux
        self.participant = participant
        self.rhythm = rhythm
        self._participant_tasks: set[asyncio.Task[None]] = set()
        self.stats = AgentStats()
        self._cid = settings.client_id
        self._pred_topic = client_topic(Channel.PRED, self._cid)
        self._live_topic = client_topic(Channel.LIVE, self._cid)
        self._live = LiveDecimator(settings.live_fs, settings.live_batch_s)
        self._live_budget = 0.0
        self._live_t = 0.0
        self._inflight = 0
        self._wake = asyncio.Event()

    def close(self) -> None:
        """Close the ``--out`` file and the buffer (after ``run``)."""
        if self.sink is not None:
            self.sink.close()
        self.buffer.close()

    # -- status payloads (also used by the uplink's Will) -----------------------------------

    def status_payload(self, online: bool, detail: str = "") -> bytes:
        """Encoded retained status."""
        return encode_status(
            Status(
                self._cid, online, self.clock.now_ns(), self.pipeline.model_version, None, detail
            )
        )

    def status_detail(self) -> str:
        """The device's current state as compact JSON for ``Status.detail``: ECG heart rate
        (bpm, median of the last 8 RR), PPG heart rate (bpm), activity level, buffer backlog."""
        hr = self.detector.hr.rate_bpm
        state: dict[str, object] = {
            "ecg_hr_bpm": round(hr, 1) if hr == hr else None,
            "beats": self.stats.beats,
            "backlog": self.buffer.counts()["pending"],
        }
        wrist_hr = getattr(self.aux, "hr", None)
        if wrist_hr:
            state["ppg_hr_bpm"] = round(wrist_hr[-1][1].bpm, 1)
        activity = getattr(self.aux, "activity_level", "")
        if activity:
            state["activity"] = activity
        return json.dumps(state, separators=(",", ":"))

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
        tasks = [asyncio.create_task(self._uplink_loop(), name="uplink")]
        if self.uplink is not None:
            tasks.append(asyncio.create_task(self._inbound_loop(), name="inbound"))
        try:
            if stop is None:
                await self._consume(source)
            else:
                await self._consume_until(source, stop)
            self._finish()
            await self._drain(drain_timeout_s)
        finally:
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
            _LOGGER.warning("source %s stopped on request", getattr(source, "name", "?"))

    def handle_chunk(self, chunk: SignalChunk) -> None:
        """Process one chunk synchronously (CPU work only; network happens elsewhere)."""
        t0 = time.perf_counter()
        self.stats.chunks += 1
        if chunk.kind == StreamKind.ECG:
            self.stats.ecg_chunks += 1
            res = self.pipeline.process(chunk)
            events: list[Event] = []
            if res.reset:
                events += self.detector.flush()
            events += self.detector.update(res.beats)
            if self.rhythm is not None:
                events += self.rhythm.process(chunk, [b.sample for b in res.beats])
            self._store(res.beats, events, res.batch)
            self._send_live(chunk)
        elif self.aux is not None:  # PPG, ACC, HR
            self.stats.aux_chunks += 1
            self._store([], self.aux.process(chunk), None)
        else:
            self.stats.ignored_chunks += 1
        self.stats.processing_s += time.perf_counter() - t0

    def _finish(self) -> None:
        res = self.pipeline.flush()
        events = self.detector.update(res.beats) + self.detector.flush()
        if self.rhythm is not None:
            events += self.rhythm.flush()
        if self.aux is not None:
            events += self.aux.flush()
        self._store(res.beats, events, res.batch)

    def _store(
        self, beats: list[BeatPrediction], events: list[Event], batch: BeatBatch | None
    ) -> None:
        if not beats and not events:
            return
        have_features = batch is not None and len(batch) == len(beats) and len(beats) > 0
        self.buffer.add(
            beats,
            events,
            batch.windows if have_features and batch is not None else None,
            batch.rr if have_features and batch is not None else None,
        )
        if self.labeler is not None and beats:
            for b, lab in zip(
                beats, self.labeler.labels_for([b.sample for b in beats]), strict=True
            ):
                if lab is not None and self.buffer.add_label(
                    b.t_ns, lab, "annotation", f"ann:{b.sample}", 0
                ):
                    self.stats.labels_annotation += 1
        if self.sink is not None:
            self.sink.write(beats, events)
        self.stats.beats += len(beats)
        self.stats.events += len(events)
        for e in events:
            self.stats.events_by_kind[e.kind] = self.stats.events_by_kind.get(e.kind, 0) + 1
            _LOGGER.warning("event %s %s", e.kind, e.details)
        self._wake.set()

    # -- live signal -------------------------------------------------------------------------

    def _send_live(self, chunk: SignalChunk) -> None:
        if self.uplink is None:
            return
        out = self._live.push(chunk)
        if not out or not self.uplink.connected:
            return
        # Token bucket on wall time: a replay at --speed max must not flood the broker with a
        # live plot nobody can watch; allow twice the real-time message rate.
        now = self.clock.now_ns() / 1e9
        rate = 2.0 / self.settings.live_batch_s
        self._live_budget = min(rate, self._live_budget + (now - self._live_t) * rate)
        self._live_t = now
        for c in out:
            if self._live_budget < 1.0:
                return
            self._live_budget -= 1.0
            self.uplink.publish_live(self._live_topic, encode_chunk("live", self._cid, c))
            self.stats.live_payloads += 1

    # -- outbox -> broker ----------------------------------------------------------------------

    def flush_outbox(self) -> int:
        """Hand pending rows to the uplink (if connected); returns the payloads handed over."""
        if self.uplink is None or not self.uplink.connected:
            return 0
        handed = 0
        while self._inflight < MAX_INFLIGHT_BATCHES:
            batch = self.buffer.take_pending(self.settings.pred_batch_max)
            if not batch.ids:
                break
            payload = encode_predictions(self._cid, batch.beats, batch.events)
            if not self.uplink.publish_reliable(
                self._pred_topic, payload, partial(self._on_ack, batch.ids)
            ):
                break
            self.buffer.mark_inflight(batch.ids)
            self._inflight += 1
            handed += 1
        return handed

    def _on_ack(self, ids: list[str], ok: bool) -> None:
        self._inflight -= 1
        if ok:
            self.buffer.mark_sent(ids)
            self.stats.pred_payloads += 1
        else:
            self.buffer.mark_pending(ids)
            self.stats.pred_refused += 1
        self._wake.set()

    async def _uplink_loop(self) -> None:
        next_status = time.monotonic() + min(5.0, self.settings.status_interval_s)
        while True:
            self.flush_outbox()
            if self.uplink is not None and time.monotonic() >= next_status:
                next_status = time.monotonic() + self.settings.status_interval_s
                self.uplink.publish_status(self.status_payload(True, self.status_detail()))
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races its timeout, and the loop would outlive the agent
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.flush_interval_s):
                    await self._wake.wait()

    async def _drain(self, timeout_s: float) -> None:
        """Wait until the outbox is empty (nothing pending or in flight) or the timeout."""
        if self.uplink is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = self.buffer.counts()
            if counts["pending"] == 0 and counts["inflight"] == 0:
                return
            self.flush_outbox()
            await asyncio.sleep(0.05)
        _LOGGER.warning(
            "outbox not drained before stopping: %s (kept for the next run)", self.buffer.counts()
        )

    # -- inbound -------------------------------------------------------------------------------

    async def _inbound_loop(self) -> None:
        assert self.uplink is not None
        async for topic, payload in self.uplink.inbound():
            self.handle_inbound(topic, payload)

    def handle_inbound(self, topic: str, payload: bytes) -> None:
        """A message on a subscribed topic: clinician labels, or federated-learning traffic
        for the participant; anything malformed is counted and logged."""
        try:
            t = parse_topic(topic)
            if t.channel != Channel.LABEL and self.participant is not None:
                task = asyncio.get_running_loop().create_task(
                    self.participant.handle(topic, payload)
                )
                self._participant_tasks.add(task)
                task.add_done_callback(self._participant_done)
                return
            if t.channel != Channel.LABEL or t.ident != self._cid:
                raise ProtocolError(f"unexpected topic {topic!r}")
            label = decode_label(payload)
            if label.client_id != self._cid:
                raise ProtocolError(f"label for {label.client_id!r} on {topic!r}")
            if label.target == "beat" and label.label not in self.pipeline.classes:
                raise ProtocolError(f"unknown beat class {label.label!r}")
        except ProtocolError as exc:
            self.stats.bad_payloads += 1
            _LOGGER.warning("rejected message on %s (%d bytes): %s", topic, len(payload), exc)
            return
        if label.target != "beat":
            _LOGGER.info(
                "event label %s=%s noted (not a training example)", label.label_id, label.label
            )
            return
        if self.buffer.add_label(label.t_ns, label.label, "clinician", label.label_id):
            self.stats.labels_clinician += 1
        else:
            self.stats.labels_unmatched += 1
            _LOGGER.warning("label %s: no recent beat near t=%d ns", label.label_id, label.t_ns)

    def _participant_done(self, task: asyncio.Task[None]) -> None:
        self._participant_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("federated participant failed: %r", task.exception())
