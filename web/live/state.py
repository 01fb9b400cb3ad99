"""Per-patient live state and the JSON shapes sent to pages (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.payloads import Status
from common.types import BeatPrediction, SignalChunk, StreamKind
from web.live.ring import StreamRing

HR_BEATS = 8  # RR intervals in the heart-rate median
RECENT_BEATS = 30  # beat classes kept for the patient's plain-words verdict


def round_list(values: np.ndarray[Any, Any], digits: int = 2) -> list[float]:
    """Values as a JSON list rounded to ``digits`` decimals (µV resolution is plenty)."""
    out: list[float] = np.round(np.asarray(values, dtype=np.float64), digits).tolist()
    return out


@dataclass
class FlaggedItem:
    """A beat or event worth a clinician's look, with its ECG snippet once available.

    Attributes
    ----------
    item_id : str
        ``beat:{t_ns}`` for a beat, the event id for an event.
    target : str
        ``"beat"`` or ``"event"``.
    t_ns : int
        R-peak time or event start, ns since the epoch.
    label : str
        Predicted class (beat) or event kind (event).
    window_s : tuple of float
        Snippet start and end, s since the epoch.
    snippet : dict or None
        ``{"t": [s relative to t_ns], "v": [µV], "fs": Hz}``; ``None`` until cut.
    """

    item_id: str
    client_id: str
    target: str
    t_ns: int
    label: str
    window_s: tuple[float, float]
    probs: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    t_end_ns: int = 0
    snippet: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible view."""
        return {
            "item_id": self.item_id,
            "client_id": self.client_id,
            "target": self.target,
            "t_ns": self.t_ns,
            "t_end_ns": self.t_end_ns,
            "label": self.label,
            "probs": self.probs,
            "details": self.details,
            "snippet": self.snippet,
        }


@dataclass
class PatientLive:
    """Live state of one patient."""

    rings: dict[StreamKind, StreamRing] = field(default_factory=dict)
    status: Status | None = None
    latest_beat: BeatPrediction | None = None
    rr_s: deque[float] = field(default_factory=lambda: deque(maxlen=HR_BEATS))
    recent_labels: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_BEATS))
    hr_stream_bpm: float | None = None
    rhythm: dict[str, Any] | None = None
    flagged: deque[FlaggedItem] = field(default_factory=deque)
    pending: list[FlaggedItem] = field(default_factory=list)

    def heart_rate_bpm(self) -> float | None:
        """Median of the last RR intervals as bpm, else the last HR-stream value."""
        if self.rr_s:
            return round(60.0 / float(np.median(list(self.rr_s))), 1)
        return self.hr_stream_bpm


def live_message(chunk: SignalChunk) -> dict[str, Any]:
    """SSE data of a live chunk: times implied by ``t0`` (s) and ``fs`` (Hz), one list per channel."""
    return {
        "stream": str(chunk.kind),
        "fs": chunk.fs,
        "t0": chunk.t0_ns / 1e9,
        "seq": chunk.seq,
        "data": [round_list(chunk.samples[:, c]) for c in range(chunk.samples.shape[1])],
    }


def status_json(s: Status) -> dict[str, Any]:
    """JSON-compatible device status."""
    return {"client_id": s.client_id, "online": s.online, "t_ns": s.t_ns,
            "model_version": s.model_version, "battery_pct": s.battery_pct,
            "detail": s.detail}  # fmt: skip
