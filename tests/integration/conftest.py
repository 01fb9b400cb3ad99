"""Fixtures shared by the integration suites: one PostgreSQL-backed store per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store import Store, open_store
from tests.support.services import pg_schema_url


@pytest.fixture()
def pg_store_url() -> Iterator[tuple[Store, str]]:
    """A store on a fresh PostgreSQL schema and its URL (for a second process), dropped after.

    Fails in CI (``MEDCHAIN_REQUIRE_SERVICES=1``) and skips elsewhere when PostgreSQL is down.
    """
    with pg_schema_url("it") as url:
        store = open_store(url)
        try:
            yield store, url
        finally:
            store.close()


@pytest.fixture()
def pg_store(pg_store_url: tuple[Store, str]) -> Store:
    """The store of :func:`pg_store_url` alone."""
    return pg_store_url[0]
