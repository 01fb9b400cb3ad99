"""Fixtures shared by every suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.datasets import data_roots
from tests.support.services import Mosquitto, run_mosquitto


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the real datasets (``MEDCHAIN_DATA`` or ../shared/data)."""
    for root in data_roots(os.environ):
        if (root / "mitdb").is_dir():
            return root
    pytest.fail("real datasets not found: set MEDCHAIN_DATA (see README)")
    raise AssertionError("unreachable")


@pytest.fixture()
def mosquitto() -> Iterator[Mosquitto]:
    """A private anonymous mosquitto on a free loopback port for one test."""
    with run_mosquitto() as broker:
        yield broker
