"""Fixtures shared by every suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from common.datasets import data_roots
from tests.support.services import Mosquitto, run_mosquitto

# Property tests check correctness, not speed (speed lives in bench/): no per-example deadline,
# so a loaded 2-core CI machine cannot turn a slow example into a failure.
settings.register_profile("medchain", deadline=None, print_blob=True)
settings.load_profile("medchain")


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
