"""Where datasets are found, what a user is told about a missing one, and the tests' data
helper (skip with the dataset's name and how to get it; fail under MEDCHAIN_REQUIRE_DATA=1)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import common.datasets
from common.datasets import DATASETS, dataset_dir, how_to_get
from common.errors import DataNotFoundError
from tests.support.datasets import dataset_path, require_data


@pytest.fixture()
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(MEDCHAIN_DATA, download cache data folder), both empty."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("MEDCHAIN_DATA", str(data))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(cache))
    monkeypatch.delenv("MEDCHAIN_REQUIRE_DATA", raising=False)
    return data, cache / "data"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_says_how_to_get_it(name: str) -> None:
    hint = how_to_get(name)
    if DATASETS[name].physionet is not None:
        assert f"medchain data download {name}" in hint
    else:
        assert "medchain data download" not in hint
        assert DATASETS[name].source.split(",")[0] in hint and DATASETS[name].terms in hint


def test_docstring_examples() -> None:
    assert doctest.testmod(common.datasets).failed == 0


def test_not_found_error_carries_the_hint(tmp_path: Path) -> None:
    env = {"MEDCHAIN_DATA": str(tmp_path), "MEDCHAIN_CACHE": str(tmp_path / "c")}
    with pytest.raises(DataNotFoundError, match="archive.ics.uci.edu/dataset/283"):
        dataset_dir("hmp_wrist_adl", env)


def test_missing_dataset_skips_with_its_name_and_how_to_get_it(roots: tuple[Path, Path]) -> None:
    with pytest.raises(pytest.skip.Exception, match="dataset aftdb not found: run `medchain data"):
        require_data("aftdb")
    with pytest.raises(pytest.skip.Exception, match="polar_h10_ble_captures not found: not down"):
        dataset_path("polar_h10_ble_captures")


def test_missing_dataset_fails_when_data_is_required(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDCHAIN_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match=r"dataset mitdb not found.*REQUIRE_DATA=1"):
        require_data("mitdb")


def test_present_datasets_come_from_one_root(roots: tuple[Path, Path]) -> None:
    # Prepare: mitdb in MEDCHAIN_DATA, aftdb only in the download cache
    data, cached = roots
    (data / "mitdb").mkdir()
    (cached / "aftdb").mkdir(parents=True)
    # Execute / Assert
    assert require_data("mitdb") == data
    assert dataset_path("aftdb") == cached / "aftdb"
    with pytest.raises(pytest.skip.Exception, match="datasets mitdb, aftdb are not in one folder"):
        require_data("mitdb", "aftdb")
