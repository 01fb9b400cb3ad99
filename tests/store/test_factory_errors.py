"""Store URLs, unreachable/locked databases, bounded timeouts, and the retry helper."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import (
    StoreError,
    StoreUnavailableError,
    StoreURLError,
    open_store,
    parse_store_url,
    retry_with_backoff,
)
from store.errors import redact_url
from store.factory import StoreSettings
from store.retry import backoff_delays
from store.sqlite import SqliteStore
from tests.store.conftest import Backend, make_backend
from tests.support.services import free_port


@pytest.fixture()
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend("postgresql", tmp_path)


@pytest.mark.parametrize(
    ("url", "backend", "location", "schema"),
    [
        ("sqlite:///medchain.db", "sqlite", "medchain.db", None),
        ("sqlite:////var/lib/medchain/store.db", "sqlite", "/var/lib/medchain/store.db", None),
        ("sqlite://", "sqlite", ":memory:", None),
        ("sqlite:///:memory:", "sqlite", ":memory:", None),
        ("postgresql://u:p@db:5432/med", "postgresql", "postgresql://u:p@db:5432/med", None),
        (
            "postgres://db/med?schema=site_a&sslmode=require&pool_max=4",
            "postgresql",
            "postgresql://db/med?sslmode=require",
            "site_a",
        ),
    ],
)
def test_parse_store_url(url: str, backend: str, location: str, schema: str | None) -> None:
    parsed = parse_store_url(url)
    assert (parsed.backend, parsed.location, parsed.schema) == (backend, location, schema)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/x",
        "medchain.db",
        "sqlite://host/file.db",
        "postgresql://db",
        "postgresql://db/x?pool_max=0",
        "postgresql://db/x?pool_min=a",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?journal=delete",
    ],
)
def test_bad_urls_raise_store_url_error(url: str) -> None:
    with pytest.raises(StoreURLError):
        open_store(url)


def test_sqlite_synchronous_option() -> None:
    assert parse_store_url("sqlite:///x.db?synchronous=normal").sqlite_synchronous == "NORMAL"
    assert parse_store_url("sqlite:///x.db").sqlite_synchronous == "FULL"


def test_redact_url_removes_the_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/m") == "postgresql://app:***@db:5432/m"
    assert redact_url("postgresql://db/m") == "postgresql://db/m"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
    assert redact_url("postgresql://u:p/w@rd@db/m") == "postgresql://u:***@db/m"
    assert (
        redact_url("postgresql://db/m?application_name=a@b")
        == "postgresql://db/m?application_name=a@b"
    )


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(alphabet="abcdefgh0123456789!@:/", min_size=1, max_size=12))
def test_url_parser_never_crashes_nor_leaks_passwords(text: str, password: str) -> None:
    # Execute / Assert: arbitrary text either parses or raises StoreURLError
    try:
        parse_store_url(text)
    except StoreURLError:
        pass
    url = f"postgresql://user:{password}@127.0.0.1:1/db"
    shown = redact_url(url)
    assert shown == "postgresql://user:***@127.0.0.1:1/db"
    assert isinstance(redact_url(text), str)


def test_unreachable_postgres_fails_fast_with_a_clear_error() -> None:
    # Prepare: a loopback port nobody listens on, a URL with a password
    url = f"postgresql://medchain:topsecret@127.0.0.1:{free_port()}/medchain"

    # Execute
    with pytest.raises(StoreUnavailableError) as info:
        open_store(url, settings=StoreSettings(url=url, connect_timeout_s=2.0))

    # Assert
    message = str(info.value)
    assert "topsecret" not in message and "medchain:***@127.0.0.1" in message
    assert "refused" in message.lower()
    assert info.value.url == redact_url(url)


def test_missing_postgres_database_is_unavailable(pg_backend: Backend) -> None:
    url = pg_backend.url.rsplit("/", 1)[0] + "/no_such_database_medchain"
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        open_store(url)


def test_postgres_lock_wait_is_bounded(pg_backend: Backend) -> None:
    # Prepare: another session holds the round row; the store may wait 0.3 s per statement
    import psycopg

    from store.postgres import PostgresStore

    store = pg_backend.open()
    rid = store.open_round(
        task="beat", strategy="fedavg", base_version=None, quorum=1, deadline=1e10
    ).round_id
    schema = pg_backend.url.split("schema=")[1]
    conninfo = pg_backend.url.split("?")[0]
    impatient = PostgresStore(conninfo, search_path=schema, statement_timeout_s=0.3)
    pg_backend.opened.append(impatient)
    with psycopg.connect(conninfo, options=f"-c search_path={schema}") as other:
        other.execute("SELECT * FROM fl_round WHERE round_id = %s FOR UPDATE", (rid,))

        # Execute / Assert
        with pytest.raises(StoreUnavailableError, match="timeout"):
            impatient.claim_round(rid, "w", lease_s=10)
    assert impatient.claim_round(rid, "w", lease_s=10) is not None  # lock released: works


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    # Prepare: a regular file where the folder should be
    (tmp_path / "occupied").write_text("not a folder")

    # Execute / Assert
    with pytest.raises(StoreUnavailableError, match="occupied"):
        open_store(f"sqlite:///{tmp_path / 'occupied' / 'store.db'}")


def test_sqlite_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    # Prepare: another connection holds the write lock
    path = tmp_path / "store.db"
    store = SqliteStore(path, busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    # Execute / Assert
    try:
        with pytest.raises(StoreUnavailableError, match="locked"):
            store.put_model(b"m", format="onnx")
        assert store.list_models() == []  # WAL readers are not blocked by the writer
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.put_model(b"m", format="onnx").version == 1
    store.close()


def test_closed_store_raises(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.list_models()


def test_retry_with_backoff_retries_only_transient_errors() -> None:
    # Prepare
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailableError("postgresql://u:pw@db/x", "connection refused")
        return "ok"

    # Execute
    result = retry_with_backoff(flaky, sleep=sleeps.append, rng=random.Random(0))

    # Assert
    assert result == "ok" and len(calls) == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0

    def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        retry_with_backoff(broken, sleep=sleeps.append)


def test_retry_gives_up_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    def down() -> None:
        raise StoreUnavailableError("sqlite:///x.db", "database is locked")

    with pytest.raises(StoreUnavailableError):
        retry_with_backoff(down, attempts=4, sleep=sleeps.append, rng=random.Random(1))
    assert len(sleeps) == 3
    with pytest.raises(ValueError):
        retry_with_backoff(down, attempts=0)


def test_backoff_delays_grow_and_are_capped() -> None:
    delays = backoff_delays(12, 0.5, 8.0, random.Random(3))
    assert len(delays) == 11
    assert all(0 <= d <= min(8.0, 0.5 * 2**i) for i, d in enumerate(delays))


def test_postgres_pool_exhaustion_is_bounded(pg_backend: Backend) -> None:
    # Prepare: a pool of one connection, held by someone else
    from store.postgres import PostgresStore

    schema = pg_backend.url.split("schema=")[1]
    conninfo = pg_backend.url.split("?")[0]
    store = PostgresStore(conninfo, search_path=schema, max_size=1, pool_timeout_s=0.3)
    pg_backend.opened.append(store)

    # Execute / Assert
    with store._pool.connection():
        with pytest.raises(StoreUnavailableError, match="no pooled connection"):
            store.list_models()
    assert store.list_models() == []


def test_postgres_connection_killed_by_the_server_is_replaced(pg_backend: Backend) -> None:
    # Prepare: the server ends the store's only connection (as on a restart or failover)
    import psycopg

    from store.postgres import PostgresStore

    schema = pg_backend.url.split("schema=")[1]
    conninfo = pg_backend.url.split("?")[0]
    store = PostgresStore(conninfo, search_path=schema, min_size=1, max_size=1)
    pg_backend.opened.append(store)
    with store._pool.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    # Execute: the next call must not fail (the pool checks connections before lending them)
    version = store.put_model(b"after failover", format="onnx").version

    # Assert
    assert store.get_model_bytes(version) == b"after failover"
    with store._pool.connection() as conn:
        assert conn.info.backend_pid != pid
