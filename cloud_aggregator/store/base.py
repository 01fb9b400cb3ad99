"""The ``Store`` interface shared by the aggregator and the web app.

Two implementations behave identically (one contract test suite runs against both):
:class:`~cloud_aggregator.store.sqlite.SqliteStore` (embedded default) and
:class:`~cloud_aggregator.store.postgres.PostgresStore` (production). Get one with
:func:`cloud_aggregator.store.factory.open_store`.

Semantics every method keeps:

- Every method is one transaction: it is applied completely or not at all.
- Writes from the edge (updates, predictions, events) are idempotent: a redelivered message
  changes nothing.
- Unreachable database -> :class:`~.errors.StoreUnavailableError` (retry with
  :func:`~.retry.retry_with_backoff`); missing record -> :class:`~.errors.NotFoundError`.
- Time is Unix seconds (float) from the store's clock unless a name ends in ``_ns``.
- Safe to share between threads. Several processes (aggregator replicas) may use the same
  database: round claims and finalisation are conditional updates, exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cloud_aggregator.store.records import (
    AuditEntry,
    Client,
    ClientUpdate,
    DesiredTraining,
    LabelRecord,
    LabelState,
    ModelVersion,
    PatientToken,
    RejectedUpdate,
    Round,
    TrainingControl,
    UpdateReceipt,
    User,
)
from common.types import BeatPrediction, Event

JsonMap = Mapping[str, Any]


@runtime_checkable
class Store(Protocol):
    """Persistent state of MedChain (see the module docstring for the shared semantics)."""

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The store URL without password."""
        ...

    def schema_version(self) -> int:
        """Schema version applied to the database."""
        ...

    def upgrade_schema(self, target: int | None = None) -> list[int]:
        """Apply pending migrations (up to ``target``); returns the versions applied.
        SchemaVersionError if the database is newer than this code."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...

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

        Raises ConflictError if the task already has an open/aggregating round, NotFoundError
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
        """Record an update the aggregator refused (bad hash, failed validation...)."""
        ...

    def list_updates(self, round_id: int, *, include_blobs: bool = True) -> list[ClientUpdate]:
        """Accepted updates of a round, ordered by client_id."""
        ...

    def count_updates(self, round_id: int) -> int:
        """Number of accepted updates of a round."""
        ...

    def list_rejected_updates(self, round_id: int) -> list[RejectedUpdate]:
        """Rejected updates of a round, oldest first."""
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

    # -- clients -------------------------------------------------------------------------------
    def register_client(
        self, client_id: str, *, credentials_hash: str = "", task: str = "", dataset: str = ""
    ) -> Client:
        """Create or update a client's credentials hash and assignment (status kept)."""
        ...

    def get_client(self, client_id: str) -> Client | None:
        """One client or None."""
        ...

    def list_clients(self, *, task: str | None = None, online: bool | None = None) -> list[Client]:
        """Clients ordered by id, optionally filtered."""
        ...

    def set_client_status(
        self, client_id: str, *, online: bool, seen_at: float, model_version: str | None = None
    ) -> bool:
        """Record a status report (creates an unknown client). A report older than the stored
        ``last_seen`` is ignored (retained/out-of-order messages); returns whether applied."""
        ...

    # -- predictions and events ------------------------------------------------------------------
    def insert_predictions(self, beats: Sequence[BeatPrediction]) -> int:
        """Store beat predictions idempotently by (client_id, t_ns); returns rows new."""
        ...

    def list_predictions(
        self,
        client_id: str,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[BeatPrediction]:
        """Predictions with ``since_ns <= t_ns < until_ns``, oldest first, first ``limit``."""
        ...

    def latest_predictions(self, client_id: str, n: int) -> list[BeatPrediction]:
        """The latest ``n`` predictions of a client, oldest first."""
        ...

    def prediction_counts(
        self, client_id: str, *, since_ns: int | None = None, until_ns: int | None = None
    ) -> dict[str, int]:
        """Number of beats per predicted label in the time range."""
        ...

    def insert_events(self, events: Sequence[Event]) -> int:
        """Store events idempotently by event_id; a redelivered id updates end time and
        details (an episode that grew). Returns the number of events written."""
        ...

    def list_events(
        self,
        client_id: str,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Events starting in ``[since_ns, until_ns)``, oldest first."""
        ...

    def latest_events(self, client_id: str, n: int) -> list[Event]:
        """The latest ``n`` events of a client (by start), oldest first."""
        ...

    def prune_predictions(self, before_ns: int, *, client_id: str | None = None) -> int:
        """Delete predictions with ``t_ns < before_ns`` (retention); returns rows deleted."""
        ...

    def erase_client_data(self, client_id: str) -> dict[str, int]:
        """Delete a patient's predictions, events, labels, access tokens and client record
        (right to erasure); returns rows deleted per kind. Round updates are kept (they hold
        no raw signal and are the provenance of released models)."""
        ...

    # -- clinician labels ------------------------------------------------------------------------
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
    ) -> LabelRecord:
        """Label a beat/event (``target`` 'beat' or 'event'); state ``pending``. Relabelling the
        same (client, target, t_ns) replaces the label, keeps its id and sets it pending again."""
        ...

    def pending_labels(self, client_id: str, *, limit: int = 100) -> list[LabelRecord]:
        """Labels not yet delivered to the device, oldest first."""
        ...

    def mark_labels_delivered(self, label_ids: Sequence[str]) -> int:
        """``pending -> delivered``; returns how many changed."""
        ...

    def acknowledge_labels(self, client_id: str, label_ids: Sequence[str]) -> int:
        """``pending|delivered -> acknowledged`` for labels of that client; returns count."""
        ...

    def list_labels(
        self, client_id: str, *, state: LabelState | None = None, limit: int = 100
    ) -> list[LabelRecord]:
        """Labels of a client, newest first."""
        ...

    # -- clinician users and patient tokens ------------------------------------------------------
    def create_user(self, username: str, password_hash: str, *, role: str = "clinician") -> User:
        """New active user; ConflictError if the username exists."""
        ...

    def get_user(self, username: str) -> User | None:
        """One user or None."""
        ...

    def list_users(self) -> list[User]:
        """All users by username."""
        ...

    def set_user_password(self, username: str, password_hash: str) -> bool:
        """Replace the hash; False if no such user."""
        ...

    def set_user_active(self, username: str, active: bool) -> bool:
        """Enable/disable a user; False if no such user."""
        ...

    def create_patient_token(
        self, token_hash: str, client_id: str, *, expires_at: float | None, label: str = ""
    ) -> PatientToken:
        """Store a token hash granting access to one client's data; ConflictError if present."""
        ...

    def get_patient_token(self, token_hash: str) -> PatientToken | None:
        """Look up a presented token's hash (check ``is_valid(now)``)."""
        ...

    def list_patient_tokens(self, client_id: str) -> list[PatientToken]:
        """Tokens of a client, newest first."""
        ...

    def revoke_patient_token(self, token_hash: str) -> bool:
        """Revoke; False if unknown."""
        ...

    # -- training control and audit --------------------------------------------------------------
    def get_training_control(self) -> TrainingControl:
        """Desired training state (``stopped``, generation 0 if never set)."""
        ...

    def set_training_control(
        self,
        *,
        desired: DesiredTraining,
        task: str,
        strategy: str,
        dataset: str = "",
        rounds: int = 0,
        config: JsonMap | None = None,
        updated_by: str = "",
    ) -> TrainingControl:
        """Replace the desired state; generation increases by one."""
        ...

    def audit(
        self, actor: str, action: str, *, target: str = "", details: JsonMap | None = None
    ) -> AuditEntry:
        """Append an administrative action to the audit log."""
        ...

    def list_audit(
        self, *, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries, newest first."""
        ...
