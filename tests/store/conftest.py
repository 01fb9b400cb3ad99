"""Fixtures of the store contract suite: every test runs once per backend.

SQLite runs on a temporary file; PostgreSQL on the real server (``tests.support.services.PG_URL``)
in a schema of its own, dropped afterwards. Contract tests share one migrated database per backend
for the session, emptied before each test; migration tests get a fresh database each. Without a server the PostgreSQL cases skip on a
developer machine and FAIL in CI (``MEDCHAIN_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from store import Store, open_store
from tests.support.services import PG_URL, postgres_available, require_service

BACKENDS = ("sqlite", "postgresql")
T0 = 1_800_000_000.0  # fake clock start, Unix seconds


class FakeClock:
    """A settable clock (Unix seconds) shared by the stores of one test."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pg_url_with_schema(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Backend:
    """One database of one backend for one test; ``open()`` gives another store on it."""

    name: str
    url: str
    clock: FakeClock
    opened: list[Store] = field(default_factory=list)

    def open(self, **kwargs: Any) -> Store:
        kwargs.setdefault("clock", self.clock)
        store = open_store(self.url, **kwargs)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def make_backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    if name == "sqlite":
        backend = Backend(name, f"sqlite:///{tmp_path / 'store.db'}", FakeClock())
        yield backend
        backend.close_all()
        return
    if not postgres_available():
        require_service("postgresql", f"start PostgreSQL reachable at {PG_URL}")
    schema = f"medchain_test_{uuid.uuid4().hex[:12]}"
    backend = Backend(name, pg_url_with_schema(schema), FakeClock())
    try:
        yield backend
    finally:
        backend.close_all()
        drop_pg_schema(schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database of each backend (not yet opened): migrations, several instances."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture(scope="session")
def _session_backends(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Backend, Store]]]:
    """One migrated database per backend for the whole session (emptied before each test)."""
    opened: dict[str, tuple[Backend, Store]] = {}
    cleanups: list[Iterator[Backend]] = []

    def get(name: str) -> tuple[Backend, Store]:
        if name not in opened:
            gen = make_backend(name, tmp_path_factory.mktemp(f"store-{name}"))
            backend = next(gen)
            cleanups.append(gen)
            opened[name] = (backend, backend.open())
        return opened[name]

    yield get  # type: ignore[misc]
    for gen in cleanups:
        next(gen, None)


# Tables referencing others, emptied first (PostgreSQL checks foreign keys per statement).
_PG_DELETE_FIRST = ("round_metric", "client_update", "rejected_update", "fl_round", "model_version")


def empty_store(store: Store) -> None:
    """Delete every row (not the schema version) and restart ids, so each test starts clean."""
    from store.sql_base import SqlStoreBase

    assert isinstance(store, SqlStoreBase)
    with store._tx(write=True) as tx:
        if store.dialect.name == "sqlite":
            tx.execute("PRAGMA defer_foreign_keys = ON")  # delete in any order
            tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT IN ('schema_migrations', 'sqlite_sequence')"
            )
            for (table,) in tx.all():
                tx.execute(f'DELETE FROM "{table}"')
            tx.execute("DELETE FROM sqlite_sequence")
        else:
            tx.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'"
            )
            # DELETE + sequence reset: much cheaper than TRUNCATE on a busy server.
            tables = sorted(str(t) for (t,) in tx.all())
            first = [t for t in _PG_DELETE_FIRST if t in tables]
            for table in first + [t for t in tables if t not in first]:
                tx.execute(f'DELETE FROM "{table}"')
            tx.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND is_identity = 'YES'"
            )
            for table, column in tx.all():
                tx.execute("SELECT setval(pg_get_serial_sequence(?, ?), 1, false)", (table, column))


@pytest.fixture(params=BACKENDS)
def shared(request: pytest.FixtureRequest, _session_backends: Any) -> tuple[Backend, Store]:
    """The session database of one backend, emptied, with its clock back at ``T0``."""
    backend, store = _session_backends(request.param)
    empty_store(store)
    backend.clock.now = T0
    return backend, store


@pytest.fixture()
def store(shared: tuple[Backend, Store]) -> Store:
    """A migrated, empty store with a fake clock starting at ``T0``."""
    return shared[1]


@pytest.fixture()
def clock(shared: tuple[Backend, Store]) -> FakeClock:
    """The fake clock of ``store``."""
    return shared[0].clock


StoreFactory = Callable[..., Store]
