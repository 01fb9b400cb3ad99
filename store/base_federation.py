"""The federated-learning half of the :class:`~store.base.Store` interface:
model versions, rounds (claims and finalisation), client updates and metrics.

See :mod:`store.base` for the semantics shared by every method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from common.fl_chunks import ChunkHeader
from store.records import (
    ClientUpdate,
    ModelVersion,
    NewUpdate,
    RefusedUpdate,
    RejectedUpdate,
    Round,
    RoundTally,
    UpdateReceipt,
)

JsonMap = Mapping[str, Any]


class FederationStore(Protocol):
    """Models, rounds, updates and metrics (what the aggregator needs)."""

    # -- model versions -----------------------------------------------------------------------
    def put_model(
        self,
        blob: bytes,
        *,
        format: str,
        parent: int | None = None,
        metrics: JsonMap | None = None,
        card: JsonMap | None = None,
        round_id: int | None = None,
    ) -> ModelVersion:
        """Store model bytes as a new version (always a new, higher version; sha256 computed).

        Raises NotFoundError if ``parent`` does not exist.
        """
        ...

    def get_model(self, version: int) -> ModelVersion:
        """Metadata of a version; NotFoundError if absent."""
        ...

    def get_model_bytes(self, version: int) -> bytes:
        """The bytes of a version, checked against its sha256 (CorruptStoreError otherwise)."""
        ...

    def find_model(self, sha256: str) -> ModelVersion | None:
        """Latest version whose bytes have this sha256 (idempotent seeding), or None."""
        ...

    def latest_model(self, *, format: str | None = None) -> ModelVersion | None:
        """Highest version (optionally of one format), or None if there is none."""
        ...

    def list_models(self, *, limit: int = 50) -> list[ModelVersion]:
        """Newest first, at most ``limit``."""
        ...

    # -- rounds ---------------------------------------------------------------------------------
    def open_round(
        self,
        *,
        task: str,
        strategy: str,
        base_version: int | None,
        quorum: int,
        deadline: float,
        selected_clients: Sequence[str] = (),
        config: JsonMap | None = None,
    ) -> Round:
        """Open a new round (state ``open``, next round id).

        ``deadline`` is Unix seconds. Raises ConflictError if the task already has an
        open/aggregating round, NotFoundError
        if ``base_version`` does not exist, ValueError on quorum < 1.
        """
        ...

    def get_round(self, round_id: int) -> Round:
        """One round; NotFoundError if absent."""
        ...

    def active_round(self, task: str | None = None) -> Round | None:
        """The open/aggregating round (of ``task``, or the newest of any task), or None."""
        ...

    def list_rounds(self, *, task: str | None = None, limit: int = 50) -> list[Round]:
        """Newest first."""
        ...

    def claim_round(self, round_id: int, worker: str, *, lease_s: float) -> Round | None:
        """Take the aggregation claim: ``open -> aggregating`` owned by ``worker`` for
        ``lease_s`` seconds, or take over an ``aggregating`` round whose lease has lapsed, or
        renew the caller's own claim. Returns the claimed round, or None if another worker
        holds a live claim or the round is closed/failed. Exactly one concurrent caller wins.
        """
        ...

    def finalize_round(
        self,
        round_id: int,
        worker: str,
        *,
        model_blob: bytes,
        model_format: str,
        model_metrics: JsonMap | None = None,
        model_card: JsonMap | None = None,
        round_metrics: Mapping[str, float] | None = None,
        client_metrics: Mapping[str, Mapping[str, float]] | None = None,
    ) -> ModelVersion:
        """Close a claimed round in ONE transaction: conditional ``aggregating -> closed``
        (only while ``worker`` holds the claim), insert the aggregated model as the next global
        version (parent = base version), set ``result_version``, store round and per-client
        metrics. Raises ClaimLostError (nothing written) if the caller lost the claim or the
        round was already finalised.
        """
        ...

    def fail_round(self, round_id: int, reason: str, *, worker: str | None = None) -> bool:
        """Mark a round ``failed``. Without ``worker`` only an ``open`` round (e.g. deadline
        passed without quorum); with ``worker`` only an ``aggregating`` round it holds.
        Returns False (nothing changed) otherwise.
        """
        ...

    # -- client updates ------------------------------------------------------------------------
    def record_update(
        self,
        *,
        round_id: int,
        client_id: str,
        update_id: str,
        blob: bytes,
        n_samples: int,
        metrics: JsonMap | None = None,
    ) -> UpdateReceipt:
        """Store a client update idempotently.

        ACCEPTED: stored. DUPLICATE: ``update_id`` already stored (nothing changes).
        REJECTED (also recorded in the rejected log): unknown round, round not open, client
        not selected, client already sent another update for this round, n_samples < 1.
        """
        ...

    def record_updates(self, round_id: int, updates: Sequence[NewUpdate]) -> list[UpdateReceipt]:
        """Store a batch of one round's updates in one transaction, with the rules of
        :meth:`record_update` (a client's second update in the batch is rejected); the receipts
        in input order. Costs a few round trips for the whole batch, not per update."""
        ...

    def round_tally(self, round_id: int, quorum: int, offline: Sequence[str]) -> RoundTally:
        """Counts of a round's accepted and refused updates, when its ``quorum``-th accepted
        update arrived, and how many of the ``offline`` clients have one (a few aggregate
        queries, whatever the round's size)."""
        ...

    def reject_updates(self, refused: Sequence[RefusedUpdate]) -> None:
        """Record a batch of refused updates in one transaction."""
        ...

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
        """Record an update the aggregator refused (bad hash, failed validation...).

        ``size_bytes`` is the refused payload's size in bytes.
        """
        ...

    def list_updates(self, round_id: int, *, include_blobs: bool = True) -> list[ClientUpdate]:
        """Accepted updates of a round, ordered by client_id."""
        ...

    def update_digests(self, round_id: int) -> dict[str, str]:
        """``{update_id: hex SHA-256 of its bytes}`` of a round's accepted updates (what an
        aggregator that decoded them at intake checks before it skips reading them back)."""
        ...

    def count_updates(self, round_id: int) -> int:
        """Number of accepted updates of a round."""
        ...

    def list_rejected_updates(self, round_id: int) -> list[RejectedUpdate]:
        """Rejected updates of a round, oldest first."""
        ...

    # -- chunks of split updates (durable reassembly) ----------------------------------------
    def put_update_chunk(
        self, *, sender: str, header: ChunkHeader, blob: bytes, quota_bytes: int | None = None
    ) -> int:
        """Keep one chunk of a split update (idempotent on ``(message_id, seq)``: a redelivered
        chunk keeps the first copy); returns how many distinct chunks of that message are held.

        With ``quota_bytes``, a new chunk that would bring the sender's held chunk bytes above
        it is not stored and :class:`~.errors.QuotaExceededError` is raised.
        """
        ...

    def update_chunk_blobs(self, message_id: str) -> list[bytes]:
        """The held chunk blobs of a message in ``seq`` order (gaps are simply absent)."""
        ...

    def drop_update_chunks(self, message_id: str) -> int:
        """Forget every chunk of a message (its update was admitted or refused); returns how
        many were deleted."""
        ...

    def expire_update_chunks(self, max_age_s: float) -> int:
        """Delete chunks received more than ``max_age_s`` seconds ago (updates that never
        completed); returns how many were deleted."""
        ...

    # -- metrics -------------------------------------------------------------------------------
    def record_metrics(
        self, round_id: int, metrics: Mapping[str, float], *, client_id: str | None = None
    ) -> None:
        """Upsert named metrics of a round (``client_id=None``) or of one client in it.
        NaN is stored as missing and read back as NaN; infinities raise ValueError."""
        ...

    def round_metrics(self, round_id: int) -> dict[str, float]:
        """Round-level metrics by name."""
        ...

    def client_metrics(self, round_id: int) -> dict[str, dict[str, float]]:
        """Per-client metrics of a round: ``{client_id: {name: value}}``."""
        ...

    def metric_history(
        self, name: str, *, task: str | None = None, limit: int = 100
    ) -> list[tuple[int, float]]:
        """``(round_id, value)`` of a round-level metric over the latest rounds, oldest first."""
        ...
