"""The PostgreSQL pool's check before lending a connection: skipped (no round trip) for one
returned a moment ago that heard nothing from the server since; made for any other, so a
connection the server ended is still found and replaced (real server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.services import PG_URL, postgres_available, require_service

psycopg = pytest.importorskip("psycopg")
psycopg_pool = pytest.importorskip("psycopg_pool")

from store.postgres import _RecentUse, _server_spoke  # noqa: E402


@pytest.fixture()
def conn() -> Iterator[Any]:
    if not postgres_available():
        require_service("postgresql", f"start PostgreSQL reachable at {PG_URL}")
    with psycopg.connect(PG_URL, connect_timeout=5) as c:
        yield c


@pytest.fixture()
def pings(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every real check (one round trip each) made through the pool's check function."""
    made: list[Any] = []
    real = psycopg_pool.ConnectionPool.check_connection

    def counted(c: Any) -> None:
        made.append(c)
        real(c)

    monkeypatch.setattr(psycopg_pool.ConnectionPool, "check_connection", staticmethod(counted))
    return made


def test_a_connection_returned_a_moment_ago_is_lent_without_a_ping(
    conn: Any, pings: list[Any]
) -> None:
    # Prepare
    recent = _RecentUse(idle_s=60.0)
    # Execute / Assert: never returned -> checked; returned just now -> not
    recent.check(conn)
    assert len(pings) == 1
    recent.returned(conn)
    recent.check(conn)
    assert len(pings) == 1
    assert not _server_spoke(conn)


def test_an_idle_connection_is_checked(conn: Any, pings: list[Any]) -> None:
    # Prepare: the idle bound already passed
    recent = _RecentUse(idle_s=0.0)
    recent.returned(conn)
    time.sleep(0.01)
    # Execute
    recent.check(conn)
    # Assert
    assert len(pings) == 1


def test_a_connection_the_server_ended_is_checked_and_fails(conn: Any, pings: list[Any]) -> None:
    # Prepare: returned a moment ago, then ended by the server (a restart, a failover)
    recent = _RecentUse(idle_s=60.0)
    recent.returned(conn)
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    deadline = time.monotonic() + 5
    while not _server_spoke(conn) and time.monotonic() < deadline:
        time.sleep(0.01)
    # Execute / Assert: the check is made and fails, so the pool replaces the connection
    with pytest.raises(psycopg.OperationalError):
        recent.check(conn)
    assert len(pings) == 1
    conn.close()
    assert _server_spoke(conn)  # no socket: the real check decides
