"""SQLite buffer: idempotent outbox states, pruning, labelled beats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.types import BeatPrediction, Event
from edge_agent.buffer import SqliteBuffer


def beat(t: int, label: str = "N") -> BeatPrediction:
    return BeatPrediction("d", t, t // 1000, label, {label: 1.0}, "m", 0.8)


def test_outbox_states_and_idempotent_insert(tmp_path: Path) -> None:
    # Prepare
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d")
    beats = [beat(i * 1_000_000_000) for i in range(5)]
    ev = Event("d:vt_run:1", "d", "vt_run", 1, 2, {"beats": 3})
    # Execute: the same rows twice (re-processing a replay)
    buf.add(beats, [ev])
    buf.add(beats, [ev])
    batch = buf.take_pending(4)
    buf.mark_inflight(batch.ids)
    rest = buf.take_pending(10)
    buf.mark_sent(batch.ids)
    # Assert
    assert len(batch.ids) == 4 and len(rest.ids) == 2
    assert batch.events[0] == ev and batch.beats[0] == beats[0]
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 4}
    assert buf.prune_sent(keep=1) == 3
    buf.close()


def test_labels_join_recent_features_within_tolerance(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d", keep_recent=3)
    beats = [beat(i * 1_000_000_000) for i in range(5)]
    w = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    rr = np.ones((5, 2), np.float32)
    buf.add(beats, [], w, rr)
    buf.prune_recent()  # keeps the 3 newest feature rows
    assert not buf.add_label(0, "V", "clinician", "l0")  # pruned
    assert buf.add_label(3_100_000_000, "V", "clinician", "l1")  # 100 ms off: matched
    assert not buf.add_label(3_500_000_000, "V", "clinician", "l2")  # 500 ms off: no beat
    assert buf.add_label(3_000_000_000, "S", "clinician", "l3")  # correction replaces
    kept = buf.labelled_beats()
    assert kept.labels == ["S"]
    np.testing.assert_array_equal(kept.windows[0], w[3])
    assert buf.labelled_count() == 1
    buf.close()
