"""Local SQLite buffer: the outbox of predictions/events and the labelled beats.

Everything the agent concludes is written here *before* any network I/O. A row is
``pending`` until handed to the MQTT client (in a batch with an id), ``inflight`` until the
broker acknowledges it (QoS 1 PUBACK), ``sent`` until the store's receipt for its batch arrives
(``predack/{client_id}``), then ``stored``. A broker's PUBACK only means the broker has it: a
broker restart or an ingestion outage can still lose it, so a ``sent`` row without a receipt
goes back to ``pending`` after a timeout and is sent again. Handed-over rows are retransmitted
by the MQTT client itself after a reconnect, so they are not handed over twice; rows left
``inflight`` or ``sent`` by a crash go back to ``pending`` when the buffer is reopened. Ids are
derived from the data (client, kind, time), so a row written twice is stored once and the store
upserts, so a row sent twice is stored once.

Beat features (window + RR features) of the most recent beats are kept in a bounded table so a
clinician label that arrives later (``label/{client_id}``) can be joined to its beat and kept,
with replay annotations, as training data for the device's trainer.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from common.pred_payloads import beat_body, event_body
from common.types import BeatPrediction, Event
from edge_agent.buffer_schema import create_or_upgrade
from edge_agent.label_receipts import ReceiptQueue
from edge_agent.labelled_beats import LabelledBeats, labelled_from_rows

_LOGGER = logging.getLogger(__name__)

PENDING, INFLIGHT, SENT, STORED, REJECTED = 0, 1, 2, 3, 4
_STATES = {
    PENDING: "pending",
    INFLIGHT: "inflight",
    SENT: "sent",
    STORED: "stored",
    REJECTED: "rejected",  # the store would refuse it: kept, never sent (edge_agent.outbox)
}

_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Serialise a method on the buffer's lock: the federated participant reads labelled beats
    from a worker thread while the agent writes on the event loop thread."""

    @functools.wraps(method)
    def wrapper(self: SqliteBuffer, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def beat_row_id(b: BeatPrediction) -> str:
    """Idempotent id of a beat prediction."""
    return f"{b.client_id}:beat:{b.t_ns}"


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    """Rows taken from the outbox to send together."""

    ids: list[str]
    beats: list[BeatPrediction]
    events: list[Event]


class SqliteBuffer:
    """The agent's durable buffer.

    Parameters
    ----------
    path : Path or str
        Database file (``":memory:"`` for tests).
    client_id : str
        Owner of the rows (rebuilt predictions carry it).
    keep_recent : int
        Most recent beat feature rows kept for late clinician labels.
    keep_labelled : int
        Most labelled beats kept (oldest dropped).
    """

    def __init__(
        self,
        path: Path | str,
        client_id: str,
        keep_recent: int = 20000,
        keep_labelled: int = 20000,
    ) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # 512 KiB page cache instead of SQLite's 2 MiB: the agent only appends and reads the
        # newest rows, and resident memory on a Pi is the scarce resource
        self._db.execute("PRAGMA cache_size=-512")
        create_or_upgrade(self._db)
        self._client_id = client_id
        self._keep_recent = keep_recent
        self._keep_labelled = keep_labelled
        self.receipts = ReceiptQueue(self._db, self._lock)
        n = self._db.execute(
            "UPDATE outbox SET state = ?, batch = NULL WHERE state IN (?, ?)",
            (PENDING, INFLIGHT, SENT),
        )
        if n.rowcount:
            _LOGGER.info("%d rows the store did not confirm will be sent again", n.rowcount)

    @_locked
    def close(self) -> None:
        self._db.close()

    # -- outbox -----------------------------------------------------------------------------

    @_locked
    def add(
        self,
        beats: Sequence[BeatPrediction],
        events: Sequence[Event],
        windows: npt.NDArray[np.float32] | None = None,
        rr: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """Store predictions and events (and the beats' features) in one transaction.

        Rows whose id already exists are kept as they are (idempotent re-processing).
        """
        cur = self._db.cursor()
        cur.execute("BEGIN")
        try:
            cur.executemany(
                "INSERT OR IGNORE INTO outbox (id, kind, t_ns, body) VALUES (?, 'beat', ?, ?)",
                [(beat_row_id(b), b.t_ns, json.dumps(beat_body(b))) for b in beats],
            )
            cur.executemany(
                "INSERT OR IGNORE INTO outbox (id, kind, t_ns, body) VALUES (?, 'event', ?, ?)",
                [(e.event_id, e.t_start_ns, json.dumps(event_body(e))) for e in events],
            )
            if windows is not None and rr is not None and len(beats):
                shape = json.dumps(list(windows.shape[1:]))
                w = np.ascontiguousarray(windows, dtype="<f4")
                r = np.ascontiguousarray(rr, dtype="<f4")
                cur.executemany(
                    "INSERT OR REPLACE INTO recent_beats "
                    "(t_ns, sample, predicted, window, window_shape, rr, in_af) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (b.t_ns, b.sample, b.label, w[i].tobytes(), shape, r[i].tobytes(), b.in_af)
                        for i, b in enumerate(beats)
                    ],
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    @_locked
    def take_pending(self, limit: int) -> OutboxBatch:
        """The oldest pending rows (not yet marked in flight)."""
        rows = self._db.execute(
            "SELECT id, kind, t_ns, body FROM outbox WHERE state = ? ORDER BY t_ns, id LIMIT ?",
            (PENDING, limit),
        ).fetchall()
        ids, beats, events = [], [], []
        for rid, kind, t_ns, body in rows:
            d = json.loads(body)
            ids.append(rid)
            if kind == "beat":
                rr = float("nan") if d["rr_s"] is None else float(d["rr_s"])
                beats.append(
                    BeatPrediction(
                        self._client_id,
                        t_ns,
                        d["sample"],
                        d["label"],
                        d["probs"],
                        d["model_version"],
                        rr,
                    )
                )
            else:
                events.append(
                    Event(rid, self._client_id, d["kind"], t_ns, d["t_end_ns"], d["details"])
                )
        return OutboxBatch(ids, beats, events)

    @_locked
    def _set_state(self, ids: Sequence[str], state: int) -> None:
        self._db.executemany("UPDATE outbox SET state = ? WHERE id = ?", [(state, i) for i in ids])

    @_locked
    def mark_inflight(self, ids: Sequence[str], batch: str) -> None:
        """Rows handed to the MQTT client as batch ``batch`` (it retransmits them across
        reconnects); the store's receipt names the batch."""
        self._db.executemany(
            "UPDATE outbox SET state = ?, batch = ? WHERE id = ?",
            [(INFLIGHT, batch, i) for i in ids],
        )

    @_locked
    def mark_sent(self, ids: Sequence[str], now_s: float) -> None:
        """Rows the broker acknowledged at ``now_s`` (Unix s): they wait for the store.

        A receipt may overtake the PUBACK: rows already stored stay stored.
        """
        self._db.executemany(
            "UPDATE outbox SET state = ?, sent_at = ? WHERE id = ? AND state = ?",
            [(SENT, now_s, i, INFLIGHT) for i in ids],
        )

    @_locked
    def mark_pending(self, ids: Sequence[str]) -> None:
        """Rows the MQTT client gave up on (sent again by the next flush)."""
        self._db.executemany(
            "UPDATE outbox SET state = ?, batch = NULL WHERE id = ? AND state <> ?",
            [(PENDING, i, STORED) for i in ids],
        )

    @_locked
    def mark_rejected(self, ids: Sequence[str]) -> None:
        """Pending rows the store would refuse: kept for inspection, never taken again."""
        self._db.executemany(
            "UPDATE outbox SET state = ? WHERE id = ? AND state = ?",
            [(REJECTED, i, PENDING) for i in ids],
        )

    @_locked
    def mark_stored(self, batches: Sequence[str]) -> int:
        """The store committed these batches: their rows are done. Returns the rows."""
        n = 0
        for batch in batches:
            n += self._db.execute(
                "UPDATE outbox SET state = ? WHERE batch = ? AND state IN (?, ?)",
                (STORED, batch, INFLIGHT, SENT),
            ).rowcount
        return n

    @_locked
    def requeue_unconfirmed(self, older_than_s: float, now_s: float) -> int:
        """Rows the broker acknowledged more than ``older_than_s`` s before ``now_s`` (Unix s)
        without a receipt from the store go back to pending, to be sent again. Returns them."""
        return int(self._db.execute(
            "UPDATE outbox SET state = ?, batch = NULL WHERE state = ? AND sent_at < ?",
            (PENDING, SENT, now_s - older_than_s),
        ).rowcount)  # fmt: skip

    @_locked
    def counts(self) -> dict[str, int]:
        """Rows per state: ``pending``, ``inflight``, ``sent`` (awaiting the store's receipt),
        ``stored``, ``rejected`` (set aside: the store would refuse them)."""
        out = dict.fromkeys(_STATES.values(), 0)
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            out[_STATES[state]] = n
        return out

    @_locked
    def prune_stored(self, keep: int) -> int:
        """Delete all but the newest ``keep`` stored rows, and as many rejected ones; returns
        how many were deleted."""
        n = 0
        for state in (STORED, REJECTED):
            n += self._db.execute(
                "DELETE FROM outbox WHERE state = ? AND id NOT IN "
                "(SELECT id FROM outbox WHERE state = ? ORDER BY t_ns DESC LIMIT ?)",
                (state, state, keep),
            ).rowcount
        return n

    # -- labelled beats ---------------------------------------------------------------------

    @_locked
    def prune_recent(self) -> None:
        """Keep only the newest ``keep_recent`` feature rows and ``keep_labelled`` labels."""
        for table, keep in (
            ("recent_beats", self._keep_recent),
            ("labelled_beats", self._keep_labelled),
        ):
            self._db.execute(
                f"DELETE FROM {table} WHERE t_ns < (SELECT t_ns FROM {table} "  # noqa: S608
                "ORDER BY t_ns DESC LIMIT 1 OFFSET ?)",
                (keep - 1,),
            )

    @_locked
    def add_label(
        self, t_ns: int, label: str, source: str, label_id: str, tolerance_ns: int = 150_000_000
    ) -> bool:
        """Label the recent beat nearest ``t_ns`` (within ``tolerance_ns``).

        Returns False when no recent beat is close enough (too old, or no beat there).
        A later label for the same beat replaces the earlier one (a clinician's correction).
        """
        row = self._db.execute(
            "SELECT t_ns, window, window_shape, rr, in_af FROM recent_beats "
            "WHERE t_ns BETWEEN ? AND ? ORDER BY ABS(t_ns - ?) LIMIT 1",
            (t_ns - tolerance_ns, t_ns + tolerance_ns, t_ns),
        ).fetchone()
        if row is None:
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO labelled_beats "
            "(t_ns, label, source, label_id, window, window_shape, rr, in_af) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row[0], label, source, label_id, row[1], row[2], row[3], row[4]),
        )
        return True

    @_locked
    def labelled_count(self) -> int:
        """Number of labelled beats kept."""
        return int(self._db.execute("SELECT COUNT(*) FROM labelled_beats").fetchone()[0])

    @_locked
    def labelled_beats(self, limit: int | None = None) -> LabelledBeats:
        """The newest labelled beats (all if ``limit`` is None), oldest first."""
        rows = self._db.execute(
            "SELECT t_ns, label, window, window_shape, rr, in_af FROM labelled_beats "
            "ORDER BY t_ns DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()[::-1]
        return labelled_from_rows(rows)
