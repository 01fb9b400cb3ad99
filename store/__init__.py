"""Store: one interface, PostgreSQL and SQLite backends chosen by URL.

>>> from store import open_store
>>> store = open_store("sqlite://")          # in memory; "sqlite:///medchain.db", "postgresql://..."
>>> store.schema_version() >= 1
True
>>> store.close()

Importing this package never imports psycopg; the PostgreSQL backend loads on first use.
"""

from store.base import Store
from store.errors import (
    ClaimLostError,
    ConflictError,
    CorruptStoreError,
    NotFoundError,
    QuotaExceededError,
    SchemaVersionError,
    StateError,
    StoreError,
    StoreUnavailableError,
    StoreURLError,
)
from store.factory import StoreSettings, open_store, parse_store_url
from store.records import (
    AuditEntry,
    Client,
    ClientUpdate,
    DesiredTraining,
    LabelRecord,
    LabelState,
    ModelVersion,
    NewUpdate,
    PatientToken,
    RefusedUpdate,
    RejectedUpdate,
    Round,
    RoundState,
    RoundTally,
    StatusReport,
    TrainingControl,
    UpdateReceipt,
    UpdateStatus,
    User,
)
from store.retry import retry_with_backoff

__all__ = [
    "AuditEntry",
    "ClaimLostError",
    "Client",
    "ClientUpdate",
    "ConflictError",
    "CorruptStoreError",
    "DesiredTraining",
    "LabelRecord",
    "LabelState",
    "ModelVersion",
    "NewUpdate",
    "NotFoundError",
    "PatientToken",
    "QuotaExceededError",
    "RefusedUpdate",
    "RejectedUpdate",
    "Round",
    "RoundState",
    "RoundTally",
    "StatusReport",
    "SchemaVersionError",
    "StateError",
    "Store",
    "StoreError",
    "StoreSettings",
    "StoreURLError",
    "StoreUnavailableError",
    "TrainingControl",
    "UpdateReceipt",
    "UpdateStatus",
    "User",
    "open_store",
    "parse_store_url",
    "retry_with_backoff",
]
