"""``--out`` file: every detected beat and event as one JSON object per line."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from common.types import BeatPrediction, Event


def beat_record(b: BeatPrediction) -> dict[str, Any]:
    """JSON-ready dict of a beat (``rr_s`` None for the first beat)."""
    return {
        "type": "beat",
        "t_ns": b.t_ns,
        "sample": b.sample,
        "label": b.label,
        "probs": b.probs,
        "rr_s": None if math.isnan(b.rr_s) else round(b.rr_s, 4),
        "model_version": b.model_version,
    }


def event_record(e: Event) -> dict[str, Any]:
    """JSON-ready dict of an event."""
    return {
        "type": "event",
        "event_id": e.event_id,
        "kind": e.kind,
        "t_start_ns": e.t_start_ns,
        "t_end_ns": e.t_end_ns,
        "details": e.details,
    }


class JsonlSink:
    """Appends beats and events to a JSON-lines file (line-buffered: ``tail -f`` follows it, and
    a crash loses at most the batch being written)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, beats: Sequence[BeatPrediction], events: Sequence[Event]) -> None:
        """Write a batch (beats first, then the events they completed)."""
        lines = [json.dumps(beat_record(b), separators=(",", ":")) for b in beats]
        lines += [json.dumps(event_record(e), separators=(",", ":")) for e in events]
        if lines:
            self._fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
