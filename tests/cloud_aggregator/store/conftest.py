"""Fixtures of the store contract suite: every test runs once per backend.

SQLite runs on a temporary file; PostgreSQL on the real server (``tests.support.services.PG_URL``)
in a fresh schema per test, dropped afterwards. Without a server the PostgreSQL cases skip on a
developer machine and FAIL in CI (``MEDCHAIN_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud_aggregator.store import Store, open_store
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
    """An empty database of each backend (not yet opened)."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture()
def store(backend: Backend) -> Store:
    """A migrated store with a fake clock starting at ``T0``."""
    return backend.open()


@pytest.fixture()
def clock(backend: Backend) -> FakeClock:
    """The fake clock of ``store``."""
    return backend.clock


StoreFactory = Callable[..., Store]
