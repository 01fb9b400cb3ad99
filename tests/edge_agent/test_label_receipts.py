"""Durable label receipts: queued before the network, re-sent after refusal or a crash."""

from __future__ import annotations

from pathlib import Path

from edge_agent.buffer import SqliteBuffer


def test_receipts_survive_refusal_and_restart(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "buf.sqlite"
    buf = SqliteBuffer(path, "dev")
    for lid in ("a", "b", "c"):
        buf.receipts.add(lid)
    # Execute: one batch refused, then two handed over and the process dies before the PUBACK
    first = buf.receipts.take(2)
    buf.receipts.done(first, ok=False)
    again = buf.receipts.take(2)
    buf.close()
    reopened = SqliteBuffer(path, "dev")
    after_crash = reopened.receipts.take(10)
    reopened.receipts.done(after_crash, ok=True)
    # Assert
    assert first == again == ["a", "b"]
    assert after_crash == ["a", "b", "c"]  # in-flight ones went back to pending, order kept
    assert reopened.receipts.counts() == {"pending": 0, "inflight": 0, "sent": 3}
    reopened.close()


def test_relabelled_beat_is_acknowledged_again_and_sent_rows_are_bounded(tmp_path: Path) -> None:
    # Prepare
    buf = SqliteBuffer(tmp_path / "buf.sqlite", "dev")
    buf.receipts._keep_sent = 2  # noqa: SLF001 - a small bound to observe pruning
    for lid in ("a", "b", "c"):
        buf.receipts.add(lid)
    buf.receipts.done(buf.receipts.take(10), ok=True)
    # Execute: the clinician corrects label "a" (same id, delivered again)
    buf.receipts.add("a")
    taken = buf.receipts.take(10)
    buf.receipts.done(taken, ok=True)
    # Assert
    assert taken == ["a"]
    assert buf.receipts.counts()["sent"] == 2  # only the newest keep_sent rows stay
    buf.close()
