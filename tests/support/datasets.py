"""Datasets for tests: every test that reads one asks for it by name, here.

A test declares what it reads with ``@pytest.mark.datasets("mitdb", ...)`` and takes the
``data_root`` fixture (tests/conftest.py), or calls :func:`dataset_path` / :func:`require_data`.
A missing dataset skips the test with a reason naming the dataset and how to get it
(``medchain data download NAME`` where that exists); with ``MEDCHAIN_REQUIRE_DATA=1`` (set by
``.ci/run``, which has the datasets) it fails instead, so CI runs everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.datasets import data_roots, how_to_get


def missing_data(names: tuple[str, ...]) -> str | None:
    """Why no data root holds every one of ``names`` (None when one does)."""
    roots = data_roots(os.environ)
    if any(all((root / n).is_dir() for n in names) for root in roots):
        return None
    absent = [n for n in names if not any((root / n).is_dir() for root in roots)]
    if not absent:
        return f"datasets {', '.join(names)} are not in one folder of {', '.join(map(str, roots))}"
    return "; ".join(f"dataset {n} not found: {how_to_get(n)}" for n in absent)


def require_data(*names: str) -> Path:
    """The first data root holding every dataset in ``names``; skip (or fail in CI) otherwise."""
    if not names:
        raise ValueError("name the datasets the test reads")
    reason = missing_data(names)
    if reason is None:
        return next(r for r in data_roots(os.environ) if all((r / n).is_dir() for n in names))
    if os.environ.get("MEDCHAIN_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (MEDCHAIN_REQUIRE_DATA=1)")
    pytest.skip(reason)


def dataset_path(name: str) -> Path:
    """The folder of dataset ``name``; skip (or fail in CI) when it is missing."""
    return require_data(name) / name
