"""The edge- and web-facing half of the :class:`~store.base.Store` interface:
clients, predictions, events, clinician labels, users, patient tokens, training control, audit.

See :mod:`store.base` for the semantics shared by every method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from common.types import BeatPrediction, Event
from store.records import (
    AuditEntry,
    Client,
    DesiredTraining,
    LabelRecord,
    LabelState,
    PatientToken,
    StatusReport,
    TrainingControl,
    User,
)

JsonMap = Mapping[str, Any]


class EdgeWebStore(Protocol):
    """Clients, edge data, labels and the web's accounts and controls."""

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
        """Record a status report (creates an unknown client). The online flag is always
        applied (a Last Will carries its registration time, older than the latest heartbeat);
        ``last_seen`` only moves forward; ``model_version`` changes only when given. True when
        stored."""
        ...

    def set_client_statuses(self, reports: Sequence[StatusReport]) -> int:
        """Record status reports in order, in one transaction, by the rules of
        :meth:`set_client_status`; returns how many were stored."""
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
        """Number of beats per predicted label in the time range (``since_ns``..``until_ns``, Unix ns)."""
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
        event_id: str = "",
    ) -> LabelRecord:
        """Label a beat/event (``target`` 'beat' or 'event'; an event label names its
        ``event_id``, as two events may start on the same beat); state ``pending``.
        Relabelling the same (client, target, t_ns, event_id) replaces the label under a new
        id and sets it pending again."""
        ...

    def pending_labels(self, client_id: str, *, limit: int = 100) -> list[LabelRecord]:
        """Labels not yet delivered to the device, oldest first."""
        ...

    def labels_to_send(
        self, client_id: str, *, resend_before: float, limit: int = 100
    ) -> list[LabelRecord]:
        """Pending labels, and delivered ones last sent before ``resend_before`` (Unix s) that
        the device has not acknowledged; oldest first."""
        ...

    def mark_labels_delivered(self, label_ids: Sequence[str]) -> int:
        """``pending -> delivered`` (a delivered label sent again gets its time refreshed);
        returns how many changed state."""
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
        """Replace the hash and end the user's sessions (``session_generation`` + 1); False if
        no such user."""
        ...

    def bump_user_session_generation(self, username: str) -> int | None:
        """``session_generation`` + 1 (log-out ends every copy of the user's sessions); the new
        generation, or None if no such user."""
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

    def bump_token_session_generation(self, token_hash: str) -> int | None:
        """``session_generation`` + 1 of one access code (log-out of a patient session); the
        new generation, or None if unknown."""
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
