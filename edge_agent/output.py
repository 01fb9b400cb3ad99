"""``--out`` file: every detected beat and event as one JSON object per line.

A beat line: ``{"type": "beat", "t_ns", "sample", "pred", ["ref",] "probs", "rr_s",
"model_version"}``; ``pred`` is the model's class, ``ref`` (only when the replay has
annotations) the annotated class. An event line: ``{"type": "event", "event_id", "kind",
"t_start_ns", "t_end_ns", "details"}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from common.types import BeatPrediction, Event

_NO_REF = object()


def beat_record(b: BeatPrediction, ref: str | None | object = _NO_REF) -> dict[str, Any]:
    """JSON-ready dict of a beat: ``pred`` is the model's class; ``ref`` the replay's reference
    (AAMI class of the annotated beat within 150 ms, None if none) when the replay has
    annotations; ``rr_s`` is None for the first beat."""
    record: dict[str, Any] = {"type": "beat", "t_ns": b.t_ns, "sample": b.sample, "pred": b.label}
    if ref is not _NO_REF:
        record["ref"] = ref
    record |= {
        "probs": b.probs,
        "rr_s": None if math.isnan(b.rr_s) else round(b.rr_s, 4),
        "model_version": b.model_version,
    }
    return record


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

    def write(
        self,
        beats: Sequence[BeatPrediction],
        events: Sequence[Event],
        refs: Sequence[str | None] | None = None,
    ) -> None:
        """Write a batch (beats first, then the events they completed); ``refs`` are the
        reference classes of the beats when the replay has annotations."""
        records = (
            [beat_record(b) for b in beats]
            if refs is None
            else [beat_record(b, r) for b, r in zip(beats, refs, strict=True)]
        )
        lines = [json.dumps(r, separators=(",", ":")) for r in records]
        lines += [json.dumps(event_record(e), separators=(",", ":")) for e in events]
        if lines:
            self._fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
