"""`medchain data download|list`: what can be downloaded is, a failed download leaves nothing
behind, and a dataset that cannot be downloaded says where to get it (no network: a fake wfdb)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from common.datasets import DATASETS, PhysionetFetch, dataset_dir
from common.errors import DataNotFoundError, MedchainError
from medchain.cli import main
from models.data_cli import download_dataset, fetch_physionet

Call = tuple[str, tuple[object, ...], dict[str, object]]


def fake_wfdb(
    monkeypatch: pytest.MonkeyPatch, dl_database: Callable[..., None] | None = None
) -> list[Call]:
    """Put a ``wfdb`` module whose downloads are recorded (and optionally fail) in sys.modules."""
    calls: list[Call] = []

    def record(name: str) -> Callable[..., None]:
        def fn(*args: object, **kwargs: object) -> None:
            calls.append((name, args, kwargs))
            if name == "dl_database" and dl_database is not None:
                dl_database(*args, **kwargs)

        return fn

    module = types.ModuleType("wfdb")
    module.dl_database = record("dl_database")  # type: ignore[attr-defined]
    module.dl_files = record("dl_files")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wfdb", module)
    return calls


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty download cache (``MEDCHAIN_CACHE``) that does not exist yet; no other data root."""
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MEDCHAIN_DATA", str(tmp_path / "no-data"))
    return tmp_path / "cache"


def _offline(*args: object, **kwargs: object) -> None:
    dl_dir = Path(str(kwargs["dl_dir"]))
    dl_dir.mkdir(parents=True, exist_ok=True)
    (dl_dir / "100.hea").write_text("100 2 360 650000\n")  # a first file, then the network fails
    raise ConnectionError("Could not resolve host: physionet.org")


def test_failed_download_is_one_line_and_leaves_no_folder(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    fake_wfdb(monkeypatch, _offline)
    # Execute
    rc = main(["data", "download", "mitdb"])
    # Assert
    err = capsys.readouterr().err
    assert rc == 2
    assert "download of mitdb failed: Could not resolve host" in err and err.count("\n") == 1
    assert not cache.exists()
    with pytest.raises(DataNotFoundError):
        dataset_dir("mitdb", {"MEDCHAIN_CACHE": str(cache), "MEDCHAIN_DATA": "/nonexistent"})


def test_interrupted_download_leaves_no_folder_but_keeps_an_existing_cache(cache: Path) -> None:
    # Prepare: the cache already holds another dataset
    (cache / "data" / "aftdb").mkdir(parents=True)

    def interrupted(spec: PhysionetFetch, dest: Path) -> None:
        (dest / "100.dat").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt

    # Execute
    with pytest.raises(KeyboardInterrupt):
        download_dataset("mitdb", {"MEDCHAIN_CACHE": str(cache)}, fetch=interrupted)
    # Assert
    assert sorted(p.name for p in (cache / "data").iterdir()) == ["aftdb"]


def test_download_that_gives_no_files_is_an_error(cache: Path) -> None:
    with pytest.raises(MedchainError, match="download of aftdb gave no files"):
        download_dataset("aftdb", {"MEDCHAIN_CACHE": str(cache)}, fetch=lambda spec, dest: None)
    assert not cache.exists()


def test_finished_download_is_moved_into_place(cache: Path) -> None:
    # Prepare
    def fetch(spec: PhysionetFetch, dest: Path) -> None:
        (dest / "learning-set").mkdir()
        (dest / "learning-set" / "n01.hea").write_text(spec.database)

    # Execute
    folder = download_dataset("aftdb", {"MEDCHAIN_CACHE": str(cache)}, fetch=fetch)
    # Assert
    assert folder == cache / "data" / "aftdb"
    assert (folder / "learning-set" / "n01.hea").read_text() == "aftdb"
    assert [p.name for p in (cache / "data").iterdir()] == ["aftdb"]  # no partial folder


def test_existing_dataset_is_not_downloaded_again(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    (cache / "data" / "mitdb").mkdir(parents=True)
    calls = fake_wfdb(monkeypatch)
    # Execute
    rc = main(["data", "download", "mitdb"])
    # Assert
    assert rc == 0 and calls == []
    assert "already" in capsys.readouterr().out


def test_cinc2017_comes_as_one_record_folder_and_its_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    calls = fake_wfdb(monkeypatch)
    # Execute
    spec = DATASETS["cinc2017_training"].physionet
    assert spec is not None
    fetch_physionet(spec, tmp_path)
    # Assert: the layout of the shared copy (training2017/A00001.mat, REFERENCE-v3.csv)
    assert calls == [
        (
            "dl_database",
            ("challenge-2017/training",),
            {"dl_dir": str(tmp_path / "training2017"), "keep_subdirs": False},
        ),
        ("dl_files", ("challenge-2017", str(tmp_path), ["REFERENCE-v3.csv"]), {}),
    ]


def test_download_without_wfdb_says_what_to_install(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wfdb", None)  # import wfdb -> ImportError
    assert main(["data", "download", "aftdb"]) == 2
    assert "pip install 'medchain[wfdb]'" in capsys.readouterr().err
    assert not cache.exists()


def test_a_dataset_that_cannot_be_downloaded_says_where_to_get_it(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc = main(["data", "download", "polar_h10_ble_captures"])
    # Assert: one line naming the source; the not-found error does not suggest a download
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "polar_h10_ble_captures is not downloadable by medchain" in err
    assert "github.com/phdiethelm/h10_ecg" in err
    with pytest.raises(DataNotFoundError) as info:
        dataset_dir("polar_h10_ble_captures", {"MEDCHAIN_CACHE": str(cache), "MEDCHAIN_DATA": "/x"})
    assert "medchain data download" not in str(info.value)
    assert not cache.exists()


def test_an_unknown_dataset_lists_the_downloadable_ones(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "download", "ptbdb"]) == 2
    assert "unknown dataset 'ptbdb'; downloadable: aftdb, cinc2017_training, mitdb" in (
        capsys.readouterr().err
    )
    assert not cache.exists()


def test_data_list_says_how_to_get_each_missing_dataset(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc = main(["data", "list", "--json"])
    # Assert
    rows = {r["dataset"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert rc == 0 and set(rows) == set(DATASETS)
    assert "medchain data download mitdb" in rows["mitdb"]["get"]
    assert "medchain data download cinc2017_training" in rows["cinc2017_training"]["get"]
    assert "archive.ics.uci.edu" in rows["hmp_wrist_adl"]["get"]
    assert all(r["path"] is None for r in rows.values())
