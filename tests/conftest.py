"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.datasets import require_data
from tests.support.services import Mosquitto, run_mosquitto

# Property tests check correctness, not speed (speed lives in bench/): no per-example deadline,
# so a loaded 2-core CI machine cannot turn a slow example into a failure.
settings.register_profile("medchain", deadline=None, print_blob=True)
settings.load_profile("medchain")


@pytest.fixture()
def data_root(request: pytest.FixtureRequest) -> Path:
    """The data root holding the datasets named by the test's ``@pytest.mark.datasets(...)``.

    Skips the test (fails it under ``MEDCHAIN_REQUIRE_DATA=1``) when one is missing, saying
    how to get it; see tests/support/datasets.py.
    """
    names = tuple(n for mark in request.node.iter_markers("datasets") for n in mark.args)
    if not names:
        pytest.fail(
            f"{request.node.nodeid} uses data_root: name its datasets with @pytest.mark.datasets"
        )
    return require_data(*names)


@pytest.fixture()
def mosquitto() -> Iterator[Mosquitto]:
    """A private anonymous mosquitto on a free loopback port for one test."""
    with run_mosquitto() as broker:
        yield broker
