"""Typed, frozen records returned by every :class:`~store.base.Store`.

Times are Unix seconds (float) unless the field name ends in ``_ns`` (ns since the Unix epoch,
as sent by the edge). JSON-valued fields (``metrics``, ``card``, ``config``, ``details``) are
plain ``dict`` objects decoded from the database; treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RoundState(StrEnum):
    """State machine of a federated round: ``open -> aggregating -> closed | failed``.

    ``open -> failed`` is also allowed (deadline passed without quorum).
    """

    OPEN = "open"
    AGGREGATING = "aggregating"
    CLOSED = "closed"
    FAILED = "failed"


class UpdateStatus(StrEnum):
    """Outcome of :meth:`Store.record_update`."""

    ACCEPTED = "accepted"  # stored now
    DUPLICATE = "duplicate"  # same update_id already stored (QoS 1 redelivery): nothing changed
    REJECTED = "rejected"  # not stored; recorded in the rejected-updates log with a reason


class LabelState(StrEnum):
    """Delivery state of a clinician label: ``pending -> delivered -> acknowledged``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"


class DesiredTraining(StrEnum):
    """Training state the web asks for and the aggregator follows."""

    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """Metadata of one stored model (the bytes come from :meth:`Store.get_model_bytes`).

    Attributes
    ----------
    version : int
        Global version, strictly increasing in insertion order (gaps are possible after a
        rolled-back transaction on PostgreSQL).
    parent : int or None
        Version this one was derived from.
    round_id : int or None
        Round that produced it (None for seeded/pre-trained models).
    sha256 : str
        Hex SHA-256 of the bytes, computed by the store.
    size_bytes : int
        Length of the bytes.
    format : str
        How to read the bytes, e.g. ``onnx-int8-qdq``, ``head-fp32-npz``.
    metrics : dict
        Evaluation metrics (JSON).
    card : dict
        Model card (JSON, see ``common.model_card``).
    created_at : float
        Unix seconds.
    """

    version: int
    parent: int | None
    round_id: int | None
    sha256: str
    size_bytes: int
    format: str
    metrics: dict[str, Any]
    card: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Round:
    """One federated round and its timings.

    Attributes
    ----------
    round_id : int
        Strictly increasing id.
    task : str
        Task name (``beat``, ``ptb``...). At most one open/aggregating round per task.
    strategy : str
        Aggregation strategy (``fedavg``, ``fedprox``...).
    config : dict
        Round configuration sent to clients (JSON).
    state : RoundState
    base_version : int or None
        Global model version the clients start from.
    result_version : int or None
        Model version produced by finalising the round.
    quorum : int
        Minimum number of accepted updates (k of n).
    deadline : float
        Unix seconds after which the aggregator stops waiting.
    selected_clients : tuple of str
        Clients invited to the round; empty means anyone may contribute.
    opened_at, claimed_at, closed_at : float or None
        Unix seconds of the transitions.
    claimed_by : str or None
        Aggregator worker holding (or that last held) the aggregation claim.
    claim_expires_at : float or None
        Unix seconds at which the claim lease lapses and another worker may re-claim.
    claim_count : int
        How many times the round was claimed (>1 means a crashed claim was taken over).
    failure_reason : str
        Why the round failed (empty otherwise).
    """

    round_id: int
    task: str
    strategy: str
    config: dict[str, Any]
    state: RoundState
    base_version: int | None
    result_version: int | None
    quorum: int
    deadline: float
    selected_clients: tuple[str, ...]
    opened_at: float
    claimed_at: float | None
    closed_at: float | None
    claimed_by: str | None
    claim_expires_at: float | None
    claim_count: int
    failure_reason: str


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One accepted client update of a round.

    Attributes
    ----------
    blob : bytes or None
        The serialized update; None when listed with ``include_blobs=False``.
    n_samples : int
        Number of local training samples (FedAvg weight).
    metrics : dict
        Client-side training metrics (JSON).
    received_at : float
        Unix seconds.
    """

    update_id: str
    round_id: int
    client_id: str
    sha256: str
    size_bytes: int
    n_samples: int
    metrics: dict[str, Any]
    received_at: float
    blob: bytes | None


@dataclass(frozen=True, slots=True)
class RejectedUpdate:
    """A client update that was refused, with the reason (kept for the federation view)."""

    reject_id: int
    update_id: str
    round_id: int
    client_id: str
    reason: str
    sha256: str
    size_bytes: int
    received_at: float


@dataclass(frozen=True, slots=True)
class RoundTally:
    """Counts of an open round, for deciding whether it may close (no per-update rows).

    Attributes
    ----------
    accepted : int
        Accepted updates.
    refused : int
        Clients with a rejected update and no accepted one.
    quorum_at : float or None
        Unix seconds the k-th accepted update arrived (None: fewer than k).
    offline_reported : int
        How many of the given offline clients have an accepted update.
    """

    accepted: int
    refused: int
    quorum_at: float | None
    offline_reported: int


@dataclass(frozen=True, slots=True)
class NewUpdate:
    """One update to store in a batch (:meth:`Store.record_updates`); ``n_samples`` is the
    client's example count (its FedAvg weight), ``metrics`` its reported metrics (JSON)."""

    client_id: str
    update_id: str
    blob: bytes
    n_samples: int
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RefusedUpdate:
    """One update the aggregator refused, to log in a batch (:meth:`Store.reject_updates`)."""

    round_id: int
    client_id: str
    update_id: str
    reason: str
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A device's status report, to store in a batch (:meth:`Store.set_client_statuses`).

    ``seen_at`` is Unix seconds; ``model_version`` None leaves the stored one unchanged.
    """

    client_id: str
    online: bool
    seen_at: float
    model_version: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateReceipt:
    """Result of :meth:`Store.record_update`.

    ``update`` is the stored update (without blob) for ACCEPTED and DUPLICATE, None otherwise.
    """

    status: UpdateStatus
    reason: str = ""
    update: ClientUpdate | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """A registered edge client (one device, one patient).

    Attributes
    ----------
    credentials_hash : str
        Hash of the device credentials (hashing is the caller's job).
    task, dataset : str
        Current assignment.
    online : bool
        Last reported status.
    last_seen : float or None
        Unix seconds of the latest status/heartbeat.
    model_version : str
        Model version the device reports running.
    registered_at : float
        Unix seconds.
    """

    client_id: str
    credentials_hash: str
    task: str
    dataset: str
    online: bool
    last_seen: float | None
    model_version: str
    registered_at: float


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """A clinician's label on one beat (``target='beat'``) or event (``target='event'``).

    ``t_ns`` is the beat's R-peak time or the event's start, ns since the Unix epoch;
    ``event_id`` names the event ('' for a beat, and for an event label stored before schema
    v6 whose start no single event matched).
    """

    label_id: str
    client_id: str
    target: str
    t_ns: int
    label: str
    author: str
    note: str
    state: LabelState
    created_at: float
    updated_at: float
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A clinician account. ``password_hash`` is produced and checked by the web app.

    ``session_generation`` increases at every log-out and password change; the web refuses a
    session cookie that carries an older one.
    """

    username: str
    password_hash: str
    role: str
    active: bool
    created_at: float
    session_generation: int = 0


@dataclass(frozen=True, slots=True)
class PatientToken:
    """A patient access token (only its hash is stored).

    ``expires_at`` is Unix seconds or None (never expires). ``session_generation`` increases
    at every log-out of a session opened with this code (see :class:`User`).
    """

    token_hash: str
    client_id: str
    label: str
    created_at: float
    expires_at: float | None
    revoked: bool
    session_generation: int = 0

    def is_valid(self, now: float) -> bool:
        """True if not revoked and not expired at ``now`` (Unix seconds)."""
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class TrainingControl:
    """Desired training state (web writes, aggregator reads).

    ``generation`` increases by one on every write so the aggregator can notice changes.
    """

    desired: DesiredTraining
    task: str
    strategy: str
    dataset: str
    rounds: int
    config: dict[str, Any]
    updated_by: str
    updated_at: float
    generation: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative action (who did what to what, when)."""

    entry_id: int
    at: float
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
