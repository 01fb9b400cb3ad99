"""SQLite buffer: idempotent outbox states, pruning, labelled beats."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError
from common.types import BeatPrediction, Event
from edge_agent.buffer import PRUNE_EVERY, SqliteBuffer


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
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 4, "stored": 0, "rejected": 0}
    assert buf.mark_stored(["b1", "unknown"]) == 4
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 0, "stored": 4, "rejected": 0}
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
    assert buf.counts() == {"pending": 2, "inflight": 0, "sent": 0, "stored": 2, "rejected": 0}
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
    assert again.counts() == {"pending": 3, "inflight": 0, "sent": 0, "stored": 0, "rejected": 0}
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
    buf.labels.prune()  # keeps the 3 newest feature rows
    assert not buf.labels.add(0, "V", "clinician", "l0")  # pruned
    assert buf.labels.add(3_100_000_000, "V", "clinician", "l1")  # 100 ms off: matched
    assert not buf.labels.add(3_500_000_000, "V", "clinician", "l2")  # 500 ms off: no beat
    assert buf.labels.add(3_000_000_000, "S", "clinician", "l3")  # correction replaces
    kept = buf.labels.beats()
    assert kept.labels == ["S"]
    np.testing.assert_array_equal(kept.windows[0], w[3])
    assert buf.labels.count() == 1
    buf.close()


def test_a_labelled_beat_keeps_whether_its_stretch_was_called_af(tmp_path: Path) -> None:
    # Prepare: the quality gate marked the first two beats' stretch AF
    from dataclasses import replace

    buf = SqliteBuffer(tmp_path / "b.sqlite", "d")
    beats = [replace(beat(i * 1_000_000_000), in_af=i < 2) for i in range(4)]
    buf.add(beats, [], np.zeros((4, 3), np.float32), np.ones((4, 2), np.float32))
    # Execute: labels arrive later (a clinician, a replay's annotations)
    for i in (0, 2, 1):
        assert buf.labels.add(i * 1_000_000_000, "N", "clinician", f"l{i}")
    kept = buf.labels.beats()
    # Assert: oldest first
    assert kept.t_ns.tolist() == [0, 1_000_000_000, 2_000_000_000]
    assert kept.in_af.tolist() == [True, True, False]
    assert buf.labels.beats(limit=1).in_af.tolist() == [False]
    assert len(SqliteBuffer(tmp_path / "e.sqlite", "d").labels.beats().in_af) == 0
    buf.close()


def test_a_buffer_from_before_the_af_flag_keeps_its_beats_and_labels(tmp_path: Path) -> None:
    # Prepare: the feature tables as agents before the per-patient S-in-AF decision wrote them
    import sqlite3

    w, rr = np.zeros(3, "<f4").tobytes(), np.ones(2, "<f4").tobytes()
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript(
        "CREATE TABLE recent_beats (t_ns INTEGER PRIMARY KEY, sample INTEGER NOT NULL,"
        " predicted TEXT NOT NULL, window BLOB NOT NULL, window_shape TEXT NOT NULL,"
        " rr BLOB NOT NULL);"
        "CREATE TABLE labelled_beats (t_ns INTEGER PRIMARY KEY, label TEXT NOT NULL,"
        " source TEXT NOT NULL, label_id TEXT NOT NULL, window BLOB NOT NULL,"
        " window_shape TEXT NOT NULL, rr BLOB NOT NULL);"
    )
    db.execute("INSERT INTO recent_beats VALUES (5, 5, 'N', ?, '[3]', ?)", (w, rr))
    db.execute("INSERT INTO labelled_beats VALUES (1, 'V', 'c', 'l1', ?, '[3]', ?)", (w, rr))
    db.commit()
    db.close()
    # Execute
    buf = SqliteBuffer(tmp_path / "old.sqlite", "d")
    joined = buf.labels.add(5, "S", "c", "l5")
    buf.add([beat(9_000)], [], np.zeros((1, 3), np.float32), np.ones((1, 2), np.float32))
    # Assert: nothing lost; beats stored before the flag existed count as not in AF
    kept = buf.labels.beats()
    assert joined and kept.labels == ["V", "S"] and kept.in_af.tolist() == [False, False]
    assert buf.labels.add(9_000, "N", "c", "l9")
    buf.close()


def test_the_example_source_keeps_each_labels_af_flag_past_unknown_labels(tmp_path: Path) -> None:
    from dataclasses import replace

    from edge_agent.examples import BufferExampleSource

    # Prepare: four labelled beats, one with a label the model lacks ("?" from a clinician)
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d")
    beats = [replace(beat(i * 1_000_000_000), in_af=i in (1, 3)) for i in range(4)]
    buf.add(beats, [], np.zeros((4, 3), np.float32), np.ones((4, 2), np.float32))
    for i, label in enumerate(["N", "?", "S", "N"]):
        assert buf.labels.add(i * 1_000_000_000, label, "clinician", f"l{i}")
    source = BufferExampleSource(
        buf.labels.beats, ["N", "S", "V"], lambda w, rr: {"beat": w, "rr": rr}
    )
    # Execute
    ex = source.labelled_examples(10)
    # Assert: beats 0, 2, 3 kept, with their own flags
    assert ex.labels.tolist() == [0, 1, 0]
    assert ex.in_af is not None and ex.in_af.tolist() == [False, False, True]
    buf.close()


def test_the_buffer_keeps_its_bounds_while_the_agent_writes(tmp_path: Path) -> None:
    # Prepare: nothing called the pruning: feature rows, labels and confirmed outbox rows grew
    # without bound on the device (a Pi's SD card fills up)
    buf = SqliteBuffer(tmp_path / "b.sqlite", "d", keep_recent=50, keep_labelled=10, keep_stored=5)
    w, rr = np.zeros((1, 2, 4), np.float32), np.zeros((1, 3), np.float32)
    # Execute: 3,000 beats, each stored, labelled, sent and confirmed
    for i in range(3000):
        b = beat(i * 1_000_000_000)
        buf.add([b], [], w, rr)
        buf.labels.add(b.t_ns, "N", "annotation", f"a{i}", 0)
        taken = buf.take_pending(1)
        buf.mark_inflight(taken.ids, f"b{i}")
        buf.mark_sent(taken.ids, now_s=float(i))
        buf.mark_stored([f"b{i}"])
    # Assert: within each bound plus one pruning interval, the newest kept
    assert buf.labels.count() <= 10 + PRUNE_EVERY
    assert buf.counts()["stored"] <= 5 + PRUNE_EVERY
    assert buf.labels.beats().t_ns[-1] == 2999 * 1_000_000_000
    buf.close()
    # Assert: a file an agent that never pruned left is brought within bounds when it opens
    grown = SqliteBuffer(tmp_path / "g.sqlite", "d", keep_labelled=10**6, keep_recent=10**6)
    for i in range(50):
        grown.add([beat(i * 1_000_000_000)], [], w, rr)
        grown.labels.add(i * 1_000_000_000, "N", "annotation", f"a{i}", 0)
    grown.close()
    reopened = SqliteBuffer(tmp_path / "g.sqlite", "d", keep_labelled=10)
    assert reopened.labels.count() == 10
    assert reopened.labels.beats().t_ns[0] == 40 * 1_000_000_000  # the newest kept
    reopened.close()


def test_a_damaged_buffer_file_is_set_aside_and_monitoring_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: storage damage: the file is no SQLite database any more (a traceback before)
    path = tmp_path / "edge_buffer.sqlite"
    path.write_bytes(b"\x13\x37" * 4096)
    # Execute
    with caplog.at_level(logging.ERROR):
        buf = SqliteBuffer(path, "d")
    buf.add([beat(1)], [])
    # Assert: a fresh buffer works, the damaged bytes are kept beside it, one ERROR names both
    assert buf.counts()["pending"] == 1
    [aside] = list(tmp_path.glob("edge_buffer.sqlite.corrupt-*"))
    assert aside.read_bytes() == b"\x13\x37" * 4096
    assert "edge_buffer.sqlite" in caplog.text and aside.name in caplog.text
    buf.close()


def test_a_buffer_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="edge buffer .*missing"):
        SqliteBuffer(tmp_path / "missing" / "b.sqlite", "d")
