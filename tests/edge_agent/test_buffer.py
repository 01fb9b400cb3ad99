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
    buf.mark_inflight(batch.ids, "b1")
    rest = buf.take_pending(10)
    buf.mark_sent(batch.ids, now_s=100.0)
    # Assert
    assert len(batch.ids) == 4 and len(rest.ids) == 2
    assert batch.events[0] == ev and batch.beats[0] == beats[0]
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 4, "stored": 0}
    assert buf.mark_stored(["b1", "unknown"]) == 4
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 0, "stored": 4}
    assert buf.prune_stored(keep=1) == 3
    buf.close()


def test_rows_without_the_stores_receipt_are_sent_again(tmp_path: Path) -> None:
    # Prepare: two batches the broker acknowledged; the store confirms only the second
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d")
    buf.add([beat(i * 1_000_000_000) for i in range(4)], [])
    first, second = buf.take_pending(2), None
    buf.mark_inflight(first.ids, "b1")
    second = buf.take_pending(2)
    buf.mark_inflight(second.ids, "b2")
    buf.mark_sent(first.ids, now_s=100.0)
    buf.mark_stored(["b2"])  # a receipt may overtake the broker's acknowledgement
    buf.mark_sent(second.ids, now_s=101.0)
    # Execute / Assert: not before the timeout, then the unconfirmed batch only
    assert buf.requeue_unconfirmed(60.0, now_s=150.0) == 0
    assert buf.requeue_unconfirmed(60.0, now_s=170.0) == 2
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 0, "stored": 2}
    assert buf.take_pending(10).ids == first.ids
    # Assert: a late receipt of the requeued batch no longer applies to pending rows
    assert buf.mark_stored(["b1"]) == 0
    buf.close()


def test_reopening_sends_unconfirmed_rows_again(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d")
    buf.add([beat(i * 1_000_000_000) for i in range(3)], [])
    batch = buf.take_pending(3)
    buf.mark_inflight(batch.ids, "b1")
    buf.mark_sent(batch.ids[:2], now_s=1.0)
    buf.close()
    again = SqliteBuffer(tmp_path / "b.sqlite", "d")
    assert again.counts() == {"pending": 3, "inflight": 0, "sent": 0, "stored": 0}
    again.close()


def test_a_buffer_from_before_receipts_is_upgraded(tmp_path: Path) -> None:
    # Prepare: the outbox table as older agents wrote it, with a sent row
    import sqlite3

    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript(
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, t_ns INTEGER NOT NULL,"
        " body TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO outbox VALUES ('d:beat:1', 'beat', 1, '{}', 2);"
    )
    db.commit()
    db.close()
    # Execute
    buf = SqliteBuffer(tmp_path / "old.sqlite", "d")
    # Assert: the row was never confirmed by a store: it goes out again
    assert buf.counts()["pending"] == 1
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
