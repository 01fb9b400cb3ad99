"""Errors raised by the store; all derive from :class:`common.errors.MedchainError`.

Driver exceptions (sqlite3, psycopg) never leave a store: they are translated into these.
"""

from __future__ import annotations

from common.errors import MedchainError


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log and show).

    Works on the raw text rather than a URL parser so that a malformed URL (an unescaped ``/``
    or ``@`` in the password) is redacted too; when in doubt it hides more, never less.

    >>> redact_url("postgresql://app:s3cret@db:5432/medchain")
    'postgresql://app:***@db:5432/medchain'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _password = rest[:at].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{rest[at + 1 :]}"


class StoreError(MedchainError):
    """Base of every store error."""


class StoreURLError(StoreError):
    """The store URL is malformed or names an unsupported backend."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached (or timed out); worth retrying with back-off.

    Parameters
    ----------
    url : str
        The store URL (the password is removed before it is kept or shown).
    cause : str
        What the driver reported.
    """

    def __init__(self, url: str, cause: str) -> None:
        self.url = redact_url(url)
        self.cause = cause
        super().__init__(f"store {self.url} is unavailable: {cause}")


class SchemaVersionError(StoreError):
    """The database schema is newer than this code (or not yet migrated).

    Parameters
    ----------
    found : int
        Schema version in the database.
    supported : int
        Latest schema version this code knows.
    """

    def __init__(self, found: int, supported: int, hint: str) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"database schema version {found}, this MedChain supports up to {supported}: {hint}"
        )


class NotFoundError(StoreError):
    """A record (model version, round, user...) does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class ConflictError(StoreError):
    """A write collides with existing data (duplicate username, second active round...)."""


class StateError(StoreError):
    """A round transition is not allowed from its current state."""


class ClaimLostError(StateError):
    """The caller does not hold the aggregation claim of the round (it expired and another
    worker took it, or the round is already closed/failed). Nothing was written."""

    def __init__(self, round_id: int, worker: str, detail: str) -> None:
        self.round_id = round_id
        self.worker = worker
        super().__init__(f"worker {worker!r} does not hold round {round_id}: {detail}")


class QuotaExceededError(StoreError):
    """A sender would hold more than its quota (of chunk bytes); nothing was written."""


class CorruptStoreError(StoreError):
    """Stored bytes do not match their recorded SHA-256."""
