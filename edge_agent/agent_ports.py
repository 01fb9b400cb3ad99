"""The agent's processing ports (beat sink, labeler, rhythm and wrist monitors, quality gate,
spot checks) and its counters.

The network, buffer and clock ports are in :mod:`edge_agent.ports`; these are the ones only
:class:`edge_agent.agent.EdgeAgent` plugs in. :class:`AgentStats` counts one run (logged at
the end, printed by the CLI as JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from common.types import BeatPrediction, Event, SignalChunk
from edge_agent.pipeline import BeatBatch

__all__ = [
    "AgentStats",
    "AuxMonitor",
    "BeatGate",
    "BeatLabeler",
    "BeatSink",
    "SpotChecker",
    "WindowMonitor",
]


class BeatSink(Protocol):
    """Where every beat and event is also written (the ``--out`` JSON-lines file).

    ``refs`` (one per beat, None where no annotated beat is near) are the replay's reference
    classes, given only when the replay has annotations.
    """

    def write(
        self,
        beats: list[BeatPrediction],
        events: list[Event],
        refs: Sequence[str | None] | None = None,
    ) -> None: ...

    def close(self) -> None: ...


class BeatLabeler(Protocol):
    """Reference labels for detected beats (replay annotations), None where unknown."""

    def labels_for(self, samples: list[int]) -> list[str | None]: ...


class WindowMonitor(Protocol):
    """ECG windows + the R peaks found in them -> events (the rhythm/AF model)."""

    def process(self, chunk: SignalChunk, peaks: list[int], lead: int = 0) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


class BeatGate(Protocol):
    """Holds beats until their signal is judged readable (``edge_agent.quality_gate``)."""

    @property
    def s_in_af_as_n(self) -> bool:
        """Whether S calls in stretches called AF are reported N now."""
        ...

    def set_patient_rule(self, on: bool) -> bool:
        """Report S calls in stretches called AF as N for this patient (from the personal
        head in use, ``edge_agent.participation``); True if that changed the rule."""
        ...

    def hold(
        self, beats: list[BeatPrediction], batch: BeatBatch
    ) -> tuple[list[BeatPrediction], BeatBatch]: ...

    def flush(self) -> tuple[list[BeatPrediction], BeatBatch]: ...

    def take_events(self) -> list[Event]: ...


class SpotChecker(Protocol):
    """Spot checks requested on the control topic (``edge_agent.spot_check``)."""

    def request(self, payload: bytes) -> None: ...

    def process(self, chunk: SignalChunk) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


class AuxMonitor(Protocol):
    """Non-ECG streams (wrist PPG + ACC): heart rate, activity, falls, inactivity."""

    def process(self, chunk: SignalChunk) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


@dataclass
class AgentStats:
    """Counters of one run (logged at the end, printed by the CLI as JSON)."""

    source_name: str = ""
    chunks: int = 0
    ecg_chunks: int = 0
    ecg_s: float = 0.0  # seconds of ECG processed
    aux_chunks: int = 0
    ignored_chunks: int = 0
    beats: int = 0
    beats_by_class: dict[str, int] = field(default_factory=dict)
    events: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)
    labels_annotation: int = 0
    labels_clinician: int = 0
    labels_unmatched: int = 0
    label_receipts: int = 0  # label ids the broker acknowledged on labelack/{client_id}
    bad_payloads: int = 0
    live_payloads: int = 0
    pred_payloads: int = 0
    pred_refused: int = 0
    pred_stored: int = 0  # rows the store confirmed (predack/{client_id})
    pred_resent: int = 0  # rows sent again: acknowledged by the broker, never confirmed
    pred_rejected: int = 0  # rows set aside unsent: the store would refuse them (logged)
    rows_not_buffered: int = 0  # beats and events the buffer could not write (disk full)
    uplink_errors: int = 0  # outbox flushes that failed (logged; the next one tries again)
    gaps: int = 0
    models_installed: int = 0
    models_rejected: int = 0
    models_unannounced: int = 0  # releases dropped because no announcement named them
    stopped_by_signal: bool = False
    processing_s: float = 0.0
    source: dict[str, int] = field(default_factory=dict)

    def count(self, beats: Sequence[BeatPrediction], events: Sequence[Event]) -> None:
        """Count stored beats per class and events per kind."""
        self.beats += len(beats)
        for b in beats:
            self.beats_by_class[b.label] = self.beats_by_class.get(b.label, 0) + 1
        self.events += len(events)
        for e in events:
            self.events_by_kind[e.kind] = self.events_by_kind.get(e.kind, 0) + 1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
