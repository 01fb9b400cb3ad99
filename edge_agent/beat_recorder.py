"""Where the agent's classified beats and events go on the device: the durable buffer (with the
model inputs that make a later clinician label a training example), replay annotations as
labels, the ``--out`` file, and the run's counters."""

from __future__ import annotations

import logging
import sqlite3

from common.types import BeatPrediction, Event
from edge_agent.agent_ports import AgentStats, BeatLabeler, BeatSink
from edge_agent.buffer import SqliteBuffer
from edge_agent.pipeline import BeatBatch

_LOGGER = logging.getLogger(__name__)


class BeatRecorder:
    """Stores what the agent produced.

    Parameters
    ----------
    buffer : SqliteBuffer
        The outbox and the labelled beats.
    stats : AgentStats
        Counts beats per class, events per kind and annotation labels.
    labeler : BeatLabeler, optional
        Replay annotations -> labels of the detected beats.
    sink : BeatSink, optional
        The ``--out`` file.
    """

    def __init__(
        self,
        buffer: SqliteBuffer,
        stats: AgentStats,
        labeler: BeatLabeler | None = None,
        sink: BeatSink | None = None,
    ) -> None:
        self.buffer, self.stats, self.labeler, self.sink = buffer, stats, labeler, sink
        self._lost = 0  # rows lost since the buffer last wrote

    def store(
        self, beats: list[BeatPrediction], events: list[Event], batch: BeatBatch | None
    ) -> bool:
        """Store ``beats`` (with their model inputs ``batch`` when it matches them one to one)
        and ``events``; False when there was nothing to store.

        A buffer that cannot write (disk full) costs those rows, counted in
        ``rows_not_buffered`` and logged as an ERROR; the sink, the counters and the alarms
        carry on."""
        if not beats and not events:
            return False
        matched = batch if batch is not None and len(batch) == len(beats) and beats else None
        try:
            self.buffer.add(
                beats,
                events,
                None if matched is None else matched.windows,
                None if matched is None else matched.rr,
            )
        except sqlite3.Error as exc:  # a full or failing SD card: the alarms must go on
            if not self._lost:  # logged when it starts and when it ends, counted between
                _LOGGER.error("beats and events not buffered (%s): they will not reach the "
                              "store; monitoring goes on", exc)  # fmt: skip
            self._lost += len(beats) + len(events)
            self.stats.rows_not_buffered += len(beats) + len(events)
        else:
            if self._lost:
                _LOGGER.warning("the buffer writes again; %d rows were lost", self._lost)
            self._lost = 0
        refs = self._annotation_labels(beats)
        if self.sink is not None and refs is None:  # two-argument sinks keep working
            self.sink.write(beats, events)
        elif self.sink is not None:
            self.sink.write(beats, events, refs)
        self.stats.count(beats, events)
        for e in events:
            _LOGGER.info("event %s %s", e.kind, e.details)
        return True

    def _annotation_labels(self, beats: list[BeatPrediction]) -> list[str | None] | None:
        """The replay's reference class of each beat, stored as a label (None: no labeler)."""
        if self.labeler is None:
            return None
        refs = self.labeler.labels_for([b.sample for b in beats]) if beats else []
        try:
            for b, lab in zip(beats, refs, strict=True):
                if lab is not None and self.buffer.labels.add(
                    b.t_ns, lab, "annotation", f"ann:{b.sample}", 0
                ):
                    self.stats.labels_annotation += 1
        except sqlite3.Error as exc:  # the beats' own rows are counted by store()
            _LOGGER.error("annotation labels not buffered (%s)", exc)
        return refs
