"""Client updates: idempotent by update_id, one per client per round, rejections logged."""

# SQL here interpolates only module constants (column lists, lock clauses, ORDER direction);
# every value is a bound ? parameter.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from store.records import (
    ClientUpdate,
    NewUpdate,
    RefusedUpdate,
    RejectedUpdate,
    RoundTally,
    UpdateReceipt,
    UpdateStatus,
)
from store.sql_base import Row, Tx, dumps, loads
from store.sql_rounds import RoundsMixin, invited_set

_LOGGER = logging.getLogger(__name__)

_META_COLS = "update_id, round_id, client_id, sha256, size_bytes, n_samples, metrics, received_at"
_UPDATE_COLUMNS = (("update_id", "text"), ("round_id", "bigint"), ("client_id", "text"),
                   ("sha256", "text"), ("size_bytes", "bigint"), ("n_samples", "bigint"),
                   ("metrics", "text"), ("blob", "bytea"), ("received_at", "float8"))  # fmt: skip


def _refusal(rnd: Row | None, selected: frozenset[str], u: NewUpdate, seen: set[str]) -> str:
    """Why the store refuses a new update of a batch ("" when it may be stored)."""
    if rnd is None:
        return "unknown round"
    if rnd[0] != "open":
        return f"round is {rnd[0]}"
    if selected and u.client_id not in selected:
        return "client not selected for this round"
    if int(u.n_samples) < 1:
        return f"n_samples must be >= 1, got {u.n_samples}"
    if u.client_id in seen:
        return "client already sent an update for this round"
    return ""


def update_from_row(row: Row, blob: bytes | None = None) -> ClientUpdate:
    """Build a record from a ``_META_COLS`` row."""
    uid, rid, cid, sha, size, n, metrics, received = row[:8]
    return ClientUpdate(
        str(uid),
        int(rid),
        str(cid),
        str(sha),
        int(size),
        int(n),
        loads(metrics),
        float(received),
        blob,
    )


class UpdatesMixin(RoundsMixin):
    """Client updates of rounds."""

    def _log_rejection(
        self,
        tx: Tx,
        round_id: int,
        client_id: str,
        update_id: str,
        reason: str,
        sha256: str,
        size_bytes: int,
    ) -> UpdateReceipt:
        tx.execute(
            "INSERT INTO rejected_update (update_id, round_id, client_id, reason, sha256,"
            " size_bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (update_id, round_id, client_id, reason, sha256, size_bytes, self._clock()),
        )
        _LOGGER.warning(
            "[ROUND %d] rejected update %s from %s: %s", round_id, update_id, client_id, reason
        )
        return UpdateReceipt(UpdateStatus.REJECTED, reason)

    def _existing(self, tx: Tx, update_id: str) -> ClientUpdate | None:
        tx.execute(f"SELECT {_META_COLS} FROM client_update WHERE update_id = ?", (update_id,))
        row = tx.one()
        return None if row is None else update_from_row(row)

    def _classify_existing(
        self, tx: Tx, old: ClientUpdate, round_id: int, client_id: str, sha: str, size: int
    ) -> UpdateReceipt:
        if (old.round_id, old.client_id, old.sha256) == (round_id, client_id, sha):
            _LOGGER.debug(
                "[ROUND %d] duplicate update %s from %s", round_id, old.update_id, client_id
            )
            return UpdateReceipt(UpdateStatus.DUPLICATE, "already stored", old)
        return self._log_rejection(
            tx, round_id, client_id, old.update_id, "update_id reused for other content", sha, size
        )

    def record_update(
        self,
        *,
        round_id: int,
        client_id: str,
        update_id: str,
        blob: bytes,
        n_samples: int,
        metrics: Mapping[str, Any] | None = None,
    ) -> UpdateReceipt:
        """Store an update idempotently (see :meth:`Store.record_update`): a batch of one."""
        update = NewUpdate(client_id, update_id, blob, n_samples, dict(metrics or {}))
        return self.record_updates(round_id, [update])[0]

    def record_updates(self, round_id: int, updates: Sequence[NewUpdate]) -> list[UpdateReceipt]:
        """Store a batch of one round's updates in one transaction (see the base class).

        New updates are inserted without looking for them first (``ON CONFLICT DO NOTHING``):
        one that is already stored (a redelivery) is not inserted and is then judged against
        the stored copy, as is a refused one that may be stored already. A batch of new
        updates costs the round's row lock and the insert, not a lookup of every id as well.
        """
        if any(not u.update_id or not u.client_id for u in updates):
            raise ValueError("update_id and client_id must not be empty")
        shas = [hashlib.sha256(bytes(u.blob)).hexdigest() for u in updates]
        receipts: list[UpdateReceipt | None] = [None] * len(updates)
        with self._tx(write=True) as tx:
            tx.execute(
                "SELECT state, selected_clients FROM fl_round WHERE round_id = ?"
                + self.dialect.share_lock,
                (round_id,),
            )
            rnd = tx.one()
            selected = invited_set(rnd[1]) if rnd is not None else frozenset()
            fresh: list[int] = []
            again: list[int] = []  # an update id already new in this batch (a resent message)
            refused: dict[int, str] = {}  # why, unless it turns out to be stored already
            seen: set[str] = set()
            fresh_ids: set[str] = set()
            for i, u in enumerate(updates):
                if u.update_id in fresh_ids:
                    again.append(i)
                    continue
                reason = _refusal(rnd, selected, u, seen)
                if reason:
                    refused[i] = reason
                    continue
                seen.add(u.client_id)
                fresh_ids.add(u.update_id)
                fresh.append(i)
            stored = self._existing_many(tx, [updates[i].update_id for i in refused])
            for i, reason in refused.items():
                u = updates[i]
                old = stored.get(u.update_id)
                receipts[i] = (
                    self._classify_existing(tx, old, round_id, u.client_id, shas[i], len(u.blob))
                    if old is not None
                    else self._log_rejection(
                        tx, round_id, u.client_id, u.update_id, reason, shas[i], len(u.blob)
                    )
                )
            receipts = self._insert_fresh(tx, round_id, updates, shas, fresh, receipts)
            if again:  # judged against the stored first copy, as if sent after this batch
                stored = self._existing_many(tx, [updates[i].update_id for i in again])
                for i in again:
                    u = updates[i]
                    receipts[i] = self._classify_existing(
                        tx, stored[u.update_id], round_id, u.client_id, shas[i], len(u.blob)
                    )
        return [r for r in receipts if r is not None]

    def _insert_fresh(
        self,
        tx: Tx,
        round_id: int,
        updates: Sequence[NewUpdate],
        shas: list[str],
        fresh: list[int],
        receipts: list[UpdateReceipt | None],
    ) -> list[UpdateReceipt | None]:
        """Multi-row insert of the batch's new updates; a row not inserted is classified.

        ``RETURNING`` names the rows this transaction inserted: one stored before (a
        redelivery, or a concurrent replica storing it first) is a duplicate, not a second
        acceptance; another update of the client stored first makes it a refusal.
        """
        now = self._clock()
        rows = [
            (updates[i].update_id, round_id, updates[i].client_id, shas[i], len(updates[i].blob),
             int(updates[i].n_samples), dumps(updates[i].metrics), bytes(updates[i].blob), now)
            for i in fresh
        ]  # fmt: skip
        returned = self._insert_returning(
            tx, "client_update", _UPDATE_COLUMNS, rows, "ON CONFLICT DO NOTHING RETURNING update_id"
        )
        inserted = {str(r[0]) for r in returned}
        lost = [i for i in fresh if updates[i].update_id not in inserted]
        stored = self._existing_many(tx, [updates[i].update_id for i in lost]) if lost else {}
        for i in fresh:
            u = updates[i]
            if u.update_id in inserted:
                meta = ClientUpdate(u.update_id, round_id, u.client_id, shas[i], len(u.blob),
                                    int(u.n_samples), loads(dumps(u.metrics)), now, None)  # fmt: skip
                receipts[i] = UpdateReceipt(UpdateStatus.ACCEPTED, "", meta)
            elif (mine := stored.get(u.update_id)) is not None:  # stored by a concurrent replica
                receipts[i] = self._classify_existing(
                    tx, mine, round_id, u.client_id, shas[i], len(u.blob)
                )
            else:  # the client's other update went in first
                receipts[i] = self._log_rejection(
                    tx, round_id, u.client_id, u.update_id,
                    "client already sent an update for this round", shas[i], len(u.blob),
                )  # fmt: skip
        return receipts

    def _existing_many(self, tx: Tx, update_ids: Sequence[str]) -> dict[str, ClientUpdate]:
        rows = self._select_in(
            tx, f"SELECT {_META_COLS} FROM client_update WHERE update_id {{in}}", update_ids
        )
        return {str(r[0]): update_from_row(r) for r in rows}

    def round_tally(self, round_id: int, quorum: int, offline: Sequence[str]) -> RoundTally:
        """Counts of a round (see the base class)."""
        with self._tx(write=False) as tx:
            tx.execute("SELECT COUNT(*) FROM client_update WHERE round_id = ?", (round_id,))
            row = tx.one()
            accepted = 0 if row is None else int(row[0])
            tx.execute(
                "SELECT COUNT(DISTINCT client_id) FROM rejected_update r WHERE round_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM client_update u WHERE u.round_id = r.round_id"
                " AND u.client_id = r.client_id)",
                (round_id,),
            )
            row = tx.one()
            refused = 0 if row is None else int(row[0])
            quorum_at = None
            if quorum >= 1 and accepted >= quorum:
                tx.execute(
                    "SELECT received_at FROM client_update WHERE round_id = ?"
                    " ORDER BY received_at LIMIT 1 OFFSET ?",
                    (round_id, quorum - 1),
                )
                row = tx.one()
                quorum_at = None if row is None else float(row[0])
            counts = self._select_in(
                tx,
                "SELECT COUNT(*) FROM client_update WHERE round_id = ? AND client_id {in}",
                offline,
                (round_id,),
            )
            reported = sum(int(r[0]) for r in counts)
        return RoundTally(accepted, refused, quorum_at, reported)

    def reject_updates(self, refused: Sequence[RefusedUpdate]) -> None:
        """Record a batch of refused updates in one transaction."""
        if not refused:
            return
        now = self._clock()
        with self._tx(write=True) as tx:
            tx.executemany(
                "INSERT INTO rejected_update (update_id, round_id, client_id, reason, sha256,"
                " size_bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.update_id, r.round_id, r.client_id, r.reason, "", r.size_bytes, now)
                    for r in refused
                ],
            )

    def reject_update(
        self,
        *,
        round_id: int,
        client_id: str,
        update_id: str,
        reason: str,
        sha256: str = "",
        size_bytes: int = 0,
    ) -> None:
        """Record an update the aggregator refused."""
        with self._tx(write=True) as tx:
            self._log_rejection(tx, round_id, client_id, update_id, reason, sha256, size_bytes)

    def list_updates(self, round_id: int, *, include_blobs: bool = True) -> list[ClientUpdate]:
        """Accepted updates of a round, ordered by client_id."""
        cols = _META_COLS + (", blob" if include_blobs else "")
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {cols} FROM client_update WHERE round_id = ? ORDER BY client_id",
                (round_id,),
            )
            rows = tx.all()
        return [update_from_row(r, bytes(r[8]) if include_blobs else None) for r in rows]

    def update_digests(self, round_id: int) -> dict[str, str]:
        """``{update_id: sha256}`` of a round's accepted updates."""
        with self._tx(write=False) as tx:
            tx.execute(
                "SELECT update_id, sha256 FROM client_update WHERE round_id = ?", (round_id,)
            )
            return {str(uid): str(sha) for uid, sha in tx.all()}

    def count_updates(self, round_id: int) -> int:
        """Number of accepted updates of a round."""
        with self._tx(write=False) as tx:
            tx.execute("SELECT COUNT(*) FROM client_update WHERE round_id = ?", (round_id,))
            row = tx.one()
        return int(row[0]) if row else 0

    def list_rejected_updates(self, round_id: int) -> list[RejectedUpdate]:
        """Rejected updates of a round, oldest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                "SELECT reject_id, update_id, round_id, client_id, reason, sha256, size_bytes,"
                " received_at FROM rejected_update WHERE round_id = ? ORDER BY reject_id",
                (round_id,),
            )
            rows = tx.all()
        return [
            RejectedUpdate(
                int(r[0]),
                str(r[1]),
                int(r[2]),
                str(r[3]),
                str(r[4]),
                str(r[5]),
                int(r[6]),
                float(r[7]),
            )
            for r in rows
        ]
