"""Clinician labels in SQL: one per beat or event, pending -> delivered -> acknowledged by the
device's receipt; a correction replaces a label under a new id."""

# SQL here interpolates only module constants (column lists, ORDER direction); every value is
# a bound ? parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from store.records import LabelRecord, LabelState
from store.sql_base import Row, SqlStoreBase

_LABEL_COLS = (
    "label_id, client_id, target, t_ns, label, author, note, state, created_at, updated_at,"
    " event_id"
)


def _label(r: Row) -> LabelRecord:
    return LabelRecord(
        str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), str(r[6]),
        LabelState(r[7]), float(r[8]), float(r[9]), str(r[10]),
    )  # fmt: skip


class LabelsMixin(SqlStoreBase):
    """Clinician labels (part of :class:`store.sql_store.SqlStore`)."""

    def add_label(
        self,
        *,
        client_id: str,
        target: str,
        t_ns: int,
        label: str,
        author: str,
        note: str = "",
        label_id: str | None = None,
        event_id: str = "",
    ) -> LabelRecord:
        """Label a beat/event (an event label names its ``event_id``: two events may start on
        the same beat); relabelling replaces it, pending again, under a new id.

        The new id is what keeps a correction from being lost: the device's receipt for the
        earlier version (still in flight) names the old id, and must not acknowledge the
        correction the device has not yet had. The device keys labels by beat, so the new
        version replaces the old one there too.
        """
        if target not in ("beat", "event"):
            raise ValueError(f"label target must be 'beat' or 'event', got {target!r}")
        if not label or not client_id:
            raise ValueError("client_id and label must not be empty")
        if (target == "beat") != (event_id == ""):
            raise ValueError("an event label names its event_id, a beat label none")
        now = self._clock()
        with self._tx(write=True) as tx:
            tx.execute(
                f"INSERT INTO clinician_label ({_LABEL_COLS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                " ON CONFLICT (client_id, target, t_ns, event_id) DO UPDATE SET"
                " label_id = excluded.label_id, label = excluded.label,"
                " author = excluded.author, note = excluded.note, state = 'pending',"
                f" updated_at = excluded.updated_at RETURNING {_LABEL_COLS}",
                (label_id or uuid.uuid4().hex, client_id, target, int(t_ns), label, author,
                 note, now, now, event_id),
            )  # fmt: skip
            row = tx.one()
        assert row is not None
        return _label(row)

    def pending_labels(self, client_id: str, *, limit: int = 100) -> list[LabelRecord]:
        """Labels not yet delivered, oldest first."""
        return self._labels(client_id, LabelState.PENDING, limit, "ASC")

    def list_labels(
        self, client_id: str, *, state: LabelState | None = None, limit: int = 100
    ) -> list[LabelRecord]:
        """Labels of a client, newest first."""
        return self._labels(client_id, state, limit, "DESC")

    def _labels(
        self, client_id: str, state: LabelState | None, limit: int, order: str
    ) -> list[LabelRecord]:
        sql = f"SELECT {_LABEL_COLS} FROM clinician_label WHERE client_id = ?"
        params: list[Any] = [client_id]
        if state is not None:
            sql += " AND state = ?"
            params.append(str(LabelState(state)))
        direction = "ASC" if order == "ASC" else "DESC"
        with self._tx(write=False) as tx:
            tx.execute(
                sql + f" ORDER BY updated_at {direction}, label_id {direction} LIMIT ?",
                [*params, int(limit)],
            )
            return [_label(r) for r in tx.all()]

    def labels_to_send(
        self, client_id: str, *, resend_before: float, limit: int = 100
    ) -> list[LabelRecord]:
        """Pending labels, and delivered ones last sent before ``resend_before`` (Unix s) that
        the device has not acknowledged; oldest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_LABEL_COLS} FROM clinician_label WHERE client_id = ? AND"
                " (state = 'pending' OR (state = 'delivered' AND updated_at < ?))"
                " ORDER BY updated_at ASC, label_id ASC LIMIT ?",
                (client_id, resend_before, int(limit)),
            )
            return [_label(r) for r in tx.all()]

    def mark_labels_delivered(self, label_ids: Sequence[str]) -> int:
        """``pending -> delivered`` (a delivered label sent again gets its time refreshed);
        returns how many changed state."""
        now = self._clock()
        with self._tx(write=True) as tx:
            tx.executemany(
                "UPDATE clinician_label SET state = 'delivered', updated_at = ?"
                " WHERE label_id = ? AND state = 'pending'",
                [(now, lid) for lid in label_ids],
            )
            changed = max(tx.rowcount, 0)
            tx.executemany(
                "UPDATE clinician_label SET updated_at = ?"
                " WHERE label_id = ? AND state = 'delivered' AND updated_at < ?",
                [(now, lid, now) for lid in label_ids],
            )
            return changed

    def acknowledge_labels(self, client_id: str, label_ids: Sequence[str]) -> int:
        """``pending|delivered -> acknowledged`` for that client's labels."""
        now = self._clock()
        with self._tx(write=True) as tx:
            tx.executemany(
                "UPDATE clinician_label SET state = 'acknowledged', updated_at = ?"
                " WHERE label_id = ? AND client_id = ? AND state IN ('pending', 'delivered')",
                [(now, lid, client_id) for lid in label_ids],
            )
            return max(tx.rowcount, 0)
