"""The ``Store`` interface shared by the aggregator and the web app.

Two implementations behave identically (one contract test suite runs against both):
:class:`~store.sqlite.SqliteStore` (embedded default) and
:class:`~store.postgres.PostgresStore` (production). Get one with
:func:`store.factory.open_store`.

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

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from store.base_edge_web import EdgeWebStore
from store.base_federation import FederationStore

JsonMap = Mapping[str, Any]

__all__ = ["EdgeWebStore", "FederationStore", "JsonMap", "Store"]


@runtime_checkable
class Store(FederationStore, EdgeWebStore, Protocol):
    """Persistent state of MedChain (see the module docstring for the shared semantics).

    The methods are declared in two halves that can also be used alone:
    :class:`~store.base_federation.FederationStore` (models, rounds, updates,
    metrics) and :class:`~store.base_edge_web.EdgeWebStore` (clients, edge data,
    labels, users, tokens, training control, audit).
    """

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
