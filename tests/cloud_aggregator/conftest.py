"""Fixtures of the aggregator suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.conftest import Backend, make_backend


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database of each store backend (PostgreSQL fails in CI when unavailable)."""
    yield from make_backend(request.param, tmp_path)
