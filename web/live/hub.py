"""In-memory state of every patient's live feed and its fan-out to SSE clients (pure).

The MQTT adapter decodes payloads and calls ``on_live`` / ``on_predictions`` / ``on_status``;
the web views read ``snapshot`` and subscribe to per-patient message streams. Flagged beats
(any class but normal) and events keep a snippet of the ECG around them, cut from the ring
once the ring covers the snippet's end, so that a clinician can review them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from common.payloads import LabelAck, Status, supersedes
from common.types import BeatPrediction, Event, SignalChunk, StreamKind
from web.live.fanout import Fanout, Message
from web.live.ring import StreamRing
from web.live.state import FlaggedItem, PatientLive, live_message, round_list, status_json

_LOGGER = logging.getLogger(__name__)

NORMAL_CLASSES = frozenset({"N", "normal"})
BEAT_SNIPPET_S = (0.6, 0.8)  # s before / after the R peak
EVENT_PAD_S = 1.0  # s shown before and after an event
EVENT_MAX_S = 8.0  # longest event excerpt, s
RHYTHM_KINDS = {"af_episode": "AF", "vt_run": "VT run", "bradycardia": "Bradycardia",
                "tachycardia": "Tachycardia"}  # fmt: skip
RHYTHM_HOLD_NS = 5_000_000_000  # a rhythm event counts as ongoing until 5 s after its end
SNIPPET_WAIT_S = 5.0  # s of newer data after which a snippet is cut with what there is


class LiveHub:
    """Per-patient rings, predictions and status, fanned out to subscribers.

    Parameters
    ----------
    ring_seconds : float
        Seconds of signal kept per stream.
    recent_events : int
        Flagged items kept per patient.
    fanout : Fanout
        Where messages go.
    on_flagged : callable, optional
        Called (outside the lock) with each flagged item once its snippet is cut, e.g. to persist.
    """

    def __init__(
        self,
        ring_seconds: float,
        recent_events: int,
        fanout: Fanout,
        on_flagged: Callable[[FlaggedItem], None] | None = None,
    ) -> None:
        self.ring_seconds = ring_seconds
        self.recent_events = recent_events
        self.fanout = fanout
        self.on_flagged = on_flagged
        self._patients: dict[str, PatientLive] = {}
        self._lock = threading.Lock()

    def _patient(self, client_id: str) -> PatientLive:
        p = self._patients.get(client_id)
        if p is None:
            p = self._patients[client_id] = PatientLive(flagged=deque(maxlen=self.recent_events))
        return p

    def on_live(self, client_id: str, chunk: SignalChunk) -> None:
        """Take a decoded live chunk: ring, fan-out, and snippets that are now complete."""
        with self._lock:
            p = self._patient(client_id)
            ring = p.rings.get(chunk.kind)
            if ring is None or not ring.accepts(chunk):
                ring = p.rings[chunk.kind] = StreamRing.for_chunk(chunk, self.ring_seconds)
            fresh = ring.push(chunk)
            if chunk.kind is StreamKind.HR and chunk.n_samples:
                p.hr_stream_bpm = float(chunk.samples[-1, 0])
            ready = self._cut_snippets(p, force=False)
        if fresh is not None and self.fanout.has_subscribers(client_id):
            self.fanout.publish(client_id, Message("live", live_message(fresh)))
        self._emit(ready)

    def on_predictions(
        self, client_id: str, beats: list[BeatPrediction], events: list[Event]
    ) -> None:
        """Take decoded predictions: latest class, heart rate, rhythm and flagged items."""
        new_items: list[FlaggedItem] = []
        with self._lock:
            p = self._patient(client_id)
            for b in sorted(beats, key=lambda x: x.t_ns):
                if p.latest_beat is None or b.t_ns > p.latest_beat.t_ns:  # not a redelivery
                    p.latest_beat = b
                    p.recent_labels.append(b.label)
                    if math.isfinite(b.rr_s) and 0.2 <= b.rr_s <= 3.0:  # 20-300 bpm
                        p.rr_s.append(b.rr_s)
                if b.label not in NORMAL_CLASSES:
                    t = b.t_ns / 1e9
                    new_items.append(FlaggedItem(
                        f"beat:{b.t_ns}", client_id, "beat", b.t_ns, b.label,
                        (t - BEAT_SNIPPET_S[0], t + BEAT_SNIPPET_S[1]), dict(b.probs),
                        {"model_version": b.model_version}, b.t_ns))  # fmt: skip
            for e in events:
                rhythm = e.details.get("rhythm") or RHYTHM_KINDS.get(e.kind)
                if rhythm is not None:
                    p.rhythm = {"label": str(rhythm), "t_ns": e.t_start_ns, "t_end_ns": e.t_end_ns}
                t0, t1 = e.t_start_ns / 1e9, e.t_end_ns / 1e9
                t1 = min(max(t1, t0), t0 + EVENT_MAX_S)
                new_items.append(FlaggedItem(
                    e.event_id, client_id, "event", e.t_start_ns, e.kind,
                    (t0 - EVENT_PAD_S, t1 + EVENT_PAD_S), {}, dict(e.details), e.t_end_ns))  # fmt: skip
            known = {i.item_id for i in p.flagged} | {i.item_id for i in p.pending}
            new_items = [i for i in new_items if i.item_id not in known]
            p.pending.extend(new_items)
            ready = self._cut_snippets(p, force=False)
            summary = self._summary(p)
        summary["flagged"] = [i.to_json() | {"snippet": None, "pending": True} for i in new_items]
        self.fanout.publish(client_id, Message("pred", summary))
        self._emit(ready)

    def on_status(self, status: Status) -> None:
        """Take a device status (online/offline, battery, model version), unless a later one of
        the device was taken (a Last Will a clustered broker delivers late)."""
        with self._lock:
            p = self._patient(status.client_id)
            if not supersedes(status, p.status.stamp if p.status is not None else None):
                return
            p.status = status
        self.fanout.publish(status.client_id, Message("status", status_json(status)))

    def on_label_ack(self, ack: LabelAck) -> None:
        """Label receipts change only the store (the label review page reads the state there)."""

    def _cut_snippets(self, p: PatientLive, force: bool) -> list[FlaggedItem]:
        """Finish pending items whose window the ECG ring now covers.

        An item also finishes (with what the ring holds, possibly no snippet) once the data
        clock (newest ECG sample or beat) is ``SNIPPET_WAIT_S`` past its window, so devices
        without ECG, or a gap in the live stream, never hold items back for good.
        """
        ecg = p.rings.get(StreamKind.ECG)
        newest = ecg.newest_s if ecg is not None else float("-inf")
        if p.latest_beat is not None:
            newest = max(newest, p.latest_beat.t_ns / 1e9)
        ready: list[FlaggedItem] = []
        still: list[FlaggedItem] = []
        for item in p.pending:
            covered = ecg is not None and ecg.newest_s >= item.window_s[1]
            stale = newest > item.window_s[1] + SNIPPET_WAIT_S
            if covered or stale or force or len(p.pending) - len(ready) > self.recent_events:
                if ecg is not None:
                    t, v = ecg.window(*item.window_s)
                    if t.size:
                        item.snippet = {"fs": ecg.fs, "t": round_list(t - item.t_ns / 1e9, 3),
                                        "v": round_list(v[:, 0])}  # fmt: skip
                p.flagged.append(item)
                ready.append(item)
            else:
                still.append(item)
        p.pending = still
        return ready

    def _emit(self, items: list[FlaggedItem]) -> None:
        for item in items:
            self.fanout.publish(item.client_id, Message("flagged", item.to_json()))
            if self.on_flagged is None:
                continue
            try:
                self.on_flagged(item)
            except Exception:  # a failing sink must not break the live feed
                _LOGGER.exception("persisting flagged item %s failed", item.item_id)

    def flush_pending(self, client_id: str) -> None:
        """Cut every pending snippet now, with what the ring holds (tests, shutdown)."""
        with self._lock:
            ready = self._cut_snippets(self._patient(client_id), force=True)
        self._emit(ready)

    def _summary(self, p: PatientLive) -> dict[str, Any]:
        b = p.latest_beat
        return {
            "latest_beat": None if b is None else {
                "t_ns": b.t_ns, "label": b.label, "probs": b.probs,
                "model_version": b.model_version},
            "heart_rate_bpm": p.heart_rate_bpm(),
            "rhythm": None if p.rhythm is None else p.rhythm | {
                "active": b is not None and p.rhythm["t_end_ns"] >= b.t_ns - RHYTHM_HOLD_NS},
        }  # fmt: skip

    def summary(self, client_id: str) -> dict[str, Any] | None:
        """Latest beat, HR, rhythm and status without samples (``None`` if never heard of)."""
        with self._lock:
            p = self._patients.get(client_id)
            if p is None:
                return None
            out = self._summary(p)
            out["status"] = None if p.status is None else status_json(p.status)
            return out

    def snapshot(self, client_id: str) -> dict[str, Any] | None:
        """JSON-compatible state of one patient with its rings and flagged items (``None`` if
        never heard of)."""
        with self._lock:
            p = self._patients.get(client_id)
            if p is None:
                return None
            streams = {}
            for kind, ring in p.rings.items():
                t, v = ring.snapshot()
                streams[str(kind)] = {"fs": ring.fs, "t": round_list(t, 4),
                                      "data": [round_list(v[:, c]) for c in range(v.shape[1])]}  # fmt: skip
            out = self._summary(p)
            out["status"] = None if p.status is None else status_json(p.status)
            out["streams"] = streams
            out["flagged"] = [i.to_json() for i in reversed(p.flagged)]
            return out

    def recent_labels(self, client_id: str) -> list[str]:
        """Classes of the patient's latest beats (up to ``state.RECENT_BEATS``), oldest first."""
        with self._lock:
            p = self._patients.get(client_id)
            return [] if p is None else list(p.recent_labels)

    def flagged(self, client_id: str) -> list[FlaggedItem]:
        """Flagged items of a patient, newest first."""
        with self._lock:
            p = self._patients.get(client_id)
            return [] if p is None else list(reversed(p.flagged))

    def client_ids(self) -> list[str]:
        """Patients heard of on the live feed."""
        with self._lock:
            return sorted(self._patients)
