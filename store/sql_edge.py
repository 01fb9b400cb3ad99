"""Edge-facing data in SQL: clients and their status, predictions, events (clinician labels:
:mod:`store.sql_labels`)."""

# SQL here interpolates only module constants (column lists, lock clauses, ORDER direction);
# every value is a bound ? parameter.
# ruff: noqa: S608

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from common.types import BeatPrediction, Event
from store.records import Client, StatusReport
from store.sql_base import Row, SqlStoreBase, chunks, dumps, loads

_CLIENT_COLS = (
    "client_id, credentials_hash, task, dataset, online, last_seen, model_version, registered_at"
)
_PRED_COLS = "client_id, t_ns, sample, label, probs, model_version, rr_s"
_EVENT_COLS = "event_id, client_id, kind, t_start_ns, t_end_ns, details"
# (kind, table) erased by erase_client_data, in an order that respects references.
_ERASABLE = (
    ("predictions", "prediction"),
    ("events", "edge_event"),
    ("labels", "clinician_label"),
    ("patient_tokens", "patient_token"),
    ("client", "client"),
)
BATCH_ROWS = 500  # rows per executemany call: bounds memory and statement time


def _client(r: Row) -> Client:
    last = None if r[5] is None else float(r[5])
    return Client(
        str(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), last, str(r[6]), float(r[7])
    )


def _pred(r: Row) -> BeatPrediction:
    rr = math.nan if r[6] is None else float(r[6])
    return BeatPrediction(str(r[0]), int(r[1]), int(r[2]), str(r[3]), loads(r[4]), str(r[5]), rr)


def _event(r: Row) -> Event:
    return Event(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), loads(r[5]))


def _range(since_ns: int | None, until_ns: int | None, col: str) -> tuple[str, list[Any]]:
    sql, params = "", []
    if since_ns is not None:
        sql += f" AND {col} >= ?"
        params.append(int(since_ns))
    if until_ns is not None:
        sql += f" AND {col} < ?"
        params.append(int(until_ns))
    return sql, params


class EdgeMixin(SqlStoreBase):
    """Clients, predictions, events and labels."""

    # -- clients -------------------------------------------------------------------------------
    def register_client(
        self, client_id: str, *, credentials_hash: str = "", task: str = "", dataset: str = ""
    ) -> Client:
        """Create or update a client's credentials and assignment."""
        if not client_id:
            raise ValueError("client_id must not be empty")
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO client (client_id, credentials_hash, task, dataset, registered_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
                " credentials_hash = excluded.credentials_hash, task = excluded.task,"
                f" dataset = excluded.dataset RETURNING {_CLIENT_COLS}",
                (client_id, credentials_hash, task, dataset, self._clock()),
            )
            row = tx.one()
        assert row is not None
        return _client(row)

    def get_client(self, client_id: str) -> Client | None:
        """One client or None."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_CLIENT_COLS} FROM client WHERE client_id = ?", (client_id,))
            row = tx.one()
        return None if row is None else _client(row)

    def list_clients(self, *, task: str | None = None, online: bool | None = None) -> list[Client]:
        """Clients ordered by id."""
        sql = f"SELECT {_CLIENT_COLS} FROM client WHERE 1 = 1"
        params: list[Any] = []
        if task is not None:
            sql += " AND task = ?"
            params.append(task)
        if online is not None:
            sql += " AND online = ?"
            params.append(int(online))
        with self._tx(write=False) as tx:
            tx.execute(sql + " ORDER BY client_id", params)
            return [_client(r) for r in tx.all()]

    def set_client_status(
        self, client_id: str, *, online: bool, seen_at: float, model_version: str | None = None
    ) -> bool:
        """Record a status report: online flag as reported, ``last_seen`` only moves forward."""
        report = StatusReport(client_id, online, seen_at, model_version)
        return self.set_client_statuses([report]) == 1

    def set_client_statuses(self, reports: Sequence[StatusReport]) -> int:
        """Record status reports in order in one transaction (a reconnect storm of thousands
        of devices is a few round trips, not one transaction each)."""
        if any(not r.client_id for r in reports):
            raise ValueError("client_id must not be empty")
        if not reports:
            return 0
        now = self._clock()
        # The online flag is always applied: a Last Will carries the time it was registered
        # (connect time), older than the latest heartbeat, and must still mark the device
        # offline. Retained replays are harmless (the broker keeps only the latest message).
        with self._tx(write=True) as tx:
            tx.executemany(
                "INSERT INTO client (client_id, online, last_seen, model_version, registered_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
                " online = excluded.online,"
                " last_seen = CASE WHEN client.last_seen IS NULL"
                "   OR client.last_seen < excluded.last_seen"
                "   THEN excluded.last_seen ELSE client.last_seen END,"
                " model_version = CASE WHEN ? THEN excluded.model_version"
                "   ELSE client.model_version END",
                [
                    (r.client_id, int(r.online), float(r.seen_at), r.model_version or "", now,
                     r.model_version is not None)
                    for r in reports
                ],
            )  # fmt: skip
            return len(reports)

    # -- predictions and events ------------------------------------------------------------------
    def insert_predictions(self, beats: Sequence[BeatPrediction]) -> int:
        """Store predictions idempotently by (client_id, t_ns); returns rows new."""
        now = self._clock()
        rows = [
            (
                b.client_id,
                int(b.t_ns),
                int(b.sample),
                b.label,
                dumps(b.probs),
                b.model_version,
                None if math.isnan(b.rr_s) else float(b.rr_s),
                now,
            )  # fmt: skip
            for b in beats
        ]
        new = 0
        with self._tx(write=True) as tx:
            for batch in chunks(rows, BATCH_ROWS):
                tx.executemany(
                    f"INSERT INTO prediction ({_PRED_COLS}, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    batch,
                )
                new += max(tx.rowcount, 0)
        return new

    def list_predictions(
        self,
        client_id: str,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[BeatPrediction]:
        """Predictions in ``[since_ns, until_ns)``, oldest first."""
        cond, params = _range(since_ns, until_ns, "t_ns")
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_PRED_COLS} FROM prediction WHERE client_id = ?{cond}"
                " ORDER BY t_ns LIMIT ?",
                [client_id, *params, int(limit)],
            )
            return [_pred(r) for r in tx.all()]

    def latest_predictions(self, client_id: str, n: int) -> list[BeatPrediction]:
        """Latest ``n`` predictions, oldest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_PRED_COLS} FROM prediction WHERE client_id = ?"
                " ORDER BY t_ns DESC LIMIT ?",
                (client_id, int(n)),
            )
            return [_pred(r) for r in reversed(tx.all())]

    def prediction_counts(
        self, client_id: str, *, since_ns: int | None = None, until_ns: int | None = None
    ) -> dict[str, int]:
        """Beats per predicted label in the range."""
        cond, params = _range(since_ns, until_ns, "t_ns")
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT label, COUNT(*) FROM prediction WHERE client_id = ?{cond}"
                " GROUP BY label ORDER BY label",
                [client_id, *params],
            )
            return {str(lb): int(c) for lb, c in tx.all()}

    def insert_events(self, events: Sequence[Event]) -> int:
        """Store events idempotently by event_id (a redelivery updates end and details)."""
        now = self._clock()
        rows = [
            (
                e.event_id,
                e.client_id,
                e.kind,
                int(e.t_start_ns),
                int(e.t_end_ns),
                dumps(e.details),
                now,
            )  # fmt: skip
            for e in events
        ]
        written = 0
        with self._tx(write=True) as tx:
            for batch in chunks(rows, BATCH_ROWS):
                # The WHERE keeps another client from overwriting an event it does not own.
                tx.executemany(
                    f"INSERT INTO edge_event ({_EVENT_COLS}, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET"
                    " t_end_ns = excluded.t_end_ns, details = excluded.details"
                    " WHERE edge_event.client_id = excluded.client_id",
                    batch,
                )
                written += max(tx.rowcount, 0)
        return written

    def list_events(
        self,
        client_id: str,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Events starting in ``[since_ns, until_ns)``, oldest first."""
        cond, params = _range(since_ns, until_ns, "t_start_ns")
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_EVENT_COLS} FROM edge_event WHERE client_id = ?{cond}"
                " ORDER BY t_start_ns, event_id LIMIT ?",
                [client_id, *params, int(limit)],
            )
            return [_event(r) for r in tx.all()]

    def latest_events(self, client_id: str, n: int) -> list[Event]:
        """Latest ``n`` events by start, oldest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_EVENT_COLS} FROM edge_event WHERE client_id = ?"
                " ORDER BY t_start_ns DESC, event_id DESC LIMIT ?",
                (client_id, int(n)),
            )
            return [_event(r) for r in reversed(tx.all())]

    def prune_predictions(self, before_ns: int, *, client_id: str | None = None) -> int:
        """Delete predictions older than ``before_ns``; returns rows deleted."""
        sql = "DELETE FROM prediction WHERE t_ns < ?"
        params: list[Any] = [int(before_ns)]
        if client_id is not None:
            sql += " AND client_id = ?"
            params.append(client_id)
        with self._tx(write=True) as tx:
            tx.execute(sql, params)
            return max(tx.rowcount, 0)

    def erase_client_data(self, client_id: str) -> dict[str, int]:
        """Delete everything stored about one patient except round updates."""
        deleted: dict[str, int] = {}
        with self._tx(write=True) as tx:
            for kind, table in _ERASABLE:
                tx.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,))
                deleted[kind] = max(tx.rowcount, 0)
        return deleted
