"""Durable receipts for clinician labels: the device tells the server which labels it stored.

A receipt is queued in the buffer's SQLite file when a label arrives (before any network I/O),
handed to the uplink in batches of at most :data:`common.payloads.MAX_ACK_IDS` ids on
``medchain/v1/labelack/{client_id}``, and marked sent on the broker's PUBACK. Receipts left in
flight by a crash are sent again after a restart; the server's ``acknowledge_labels`` is
idempotent, so a receipt sent twice changes nothing. A label delivered again (the server
resends until it has the receipt) queues its receipt again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

_LOGGER = logging.getLogger(__name__)

__all__ = ["ReceiptQueue"]

PENDING, INFLIGHT, SENT = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_receipts (
    label_id TEXT PRIMARY KEY,
    state INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS label_receipts_state ON label_receipts (state, seq);
"""


class ReceiptQueue:
    """Label receipts waiting for the broker, in the buffer's database.

    Parameters
    ----------
    db : sqlite3.Connection
        The buffer's connection (autocommit).
    lock : threading.RLock
        The buffer's lock (the participant thread and the event loop share the connection).
    keep_sent : int
        Sent receipts kept (for diagnostics); older ones are deleted.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, keep_sent: int = 1000):
        self._db, self._lock, self._keep_sent = db, lock, keep_sent
        with self._lock:
            self._db.executescript(_SCHEMA)
            n = self._db.execute(
                "UPDATE label_receipts SET state = ? WHERE state = ?", (PENDING, INFLIGHT)
            ).rowcount
        if n:
            _LOGGER.info("%d label receipts left in flight by the last run will be sent again", n)

    def add(self, label_id: str) -> None:
        """Queue the receipt of ``label_id`` (again, if it was already sent)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO label_receipts (label_id, state, seq) VALUES (?, ?, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM label_receipts)) "
                "ON CONFLICT (label_id) DO UPDATE SET state = excluded.state, seq = excluded.seq",
                (label_id, PENDING),
            )

    def take(self, limit: int) -> list[str]:
        """Up to ``limit`` pending ids, oldest first, marked in flight."""
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT label_id FROM label_receipts WHERE state = ? ORDER BY seq LIMIT ?",
                    (PENDING, limit),
                )
            ]
            self._set(ids, INFLIGHT)
        return ids

    def done(self, ids: list[str], ok: bool) -> None:
        """The broker acknowledged (``ok``) or refused the receipt of ``ids``."""
        with self._lock:
            self._set(ids, SENT if ok else PENDING)
            if ok:
                self._db.execute(
                    "DELETE FROM label_receipts WHERE state = ? AND seq <= "
                    "(SELECT seq FROM label_receipts WHERE state = ? "
                    "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (SENT, SENT, self._keep_sent),
                )

    def counts(self) -> dict[str, int]:
        """Receipts per state: ``pending``, ``inflight``, ``sent``."""
        names = {PENDING: "pending", INFLIGHT: "inflight", SENT: "sent"}
        out = dict.fromkeys(names.values(), 0)
        with self._lock:
            for state, n in self._db.execute(
                "SELECT state, COUNT(*) FROM label_receipts GROUP BY state"
            ):
                out[names[state]] = n
        return out

    def _set(self, ids: list[str], state: int) -> None:
        self._db.executemany(
            "UPDATE label_receipts SET state = ? WHERE label_id = ?", [(state, i) for i in ids]
        )
