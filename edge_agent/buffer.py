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
from edge_agent.buffer_schema import delete_all_but_newest, open_buffer_db
from edge_agent.label_receipts import ReceiptQueue
from edge_agent.labelled_beats import LabelledBeatTable

_LOGGER = logging.getLogger(__name__)

PENDING, INFLIGHT, SENT, STORED, REJECTED = 0, 1, 2, 3, 4
_STATES = {
    PENDING: "pending",
    INFLIGHT: "inflight",
    SENT: "sent",
    STORED: "stored",
    REJECTED: "rejected",  # the store would refuse it: kept, never sent (edge_agent.outbox)
}

PRUNE_EVERY = 1000  # rows added between two prunings: DELETEs amortised, tables bounded

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
    keep_stored : int
        Most outbox rows kept after the store confirmed them (and as many set aside).

    The bounds are applied when the buffer opens and after every :data:`PRUNE_EVERY` rows
    added, so each table holds at most its bound plus that many rows.
    """

    def __init__(
        self,
        path: Path | str,
        client_id: str,
        keep_recent: int = 20000,
        keep_labelled: int = 20000,
        keep_stored: int = 1000,
    ) -> None:
        self._lock = threading.RLock()
        self._db = open_buffer_db(path)
        self._client_id = client_id
        self._keep_stored = keep_stored
        self._added = 0  # rows added since the last pruning
        self.receipts = ReceiptQueue(self._db, self._lock)
        self.labels = LabelledBeatTable(self._db, self._lock, keep_recent, keep_labelled)
        n = self._db.execute(
            "UPDATE outbox SET state = ?, batch = NULL WHERE state IN (?, ?)",
            (PENDING, INFLIGHT, SENT),
        )
        if n.rowcount:
            _LOGGER.info("%d rows the store did not confirm will be sent again", n.rowcount)
        self.prune()  # a file an older agent (which never pruned) left

    @_locked
    def close(self) -> None:
        """Apply the bounds and close the file."""
        self.prune()
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
        self._added += len(beats) + len(events)
        if self._added >= PRUNE_EVERY:
            self.prune()  # never raises: the rows above are stored whatever it meets

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
    def prune(self) -> None:
        """Apply the bounds (``keep_stored``, ``keep_recent``, ``keep_labelled``).

        Never raises: a bound that cannot be applied now (a full or locked disk) is logged and
        tried again after the next :data:`PRUNE_EVERY` rows; storing and monitoring go on.
        """
        self._added = 0
        try:
            stored = self.prune_stored(self._keep_stored)
            self.labels.prune()
        except sqlite3.Error as exc:
            _LOGGER.warning("buffer bounds not applied (%s): tried again later", exc)
            return
        if stored:
            _LOGGER.debug("buffer pruned: %d confirmed outbox rows dropped", stored)

    @_locked
    def prune_stored(self, keep: int) -> int:
        """Delete all but the newest ``keep`` stored rows, and as many rejected ones, in
        batches of :data:`edge_agent.buffer_schema.DELETE_BATCH` rows (a file an older agent
        let grow must not need one transaction, and its journal, the size of the backlog);
        returns how many were deleted."""
        n = 0
        for state in (STORED, REJECTED):
            n += delete_all_but_newest(self._db, "outbox", keep, f"state = {int(state)}")
        return n
