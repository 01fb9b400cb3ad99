"""beat task loader on real MIT-BIH records (read in place) and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import CorruptInputError, DataNotFoundError
from common.signals import template
from models.data.mitdb import AAMI_MAP, DS1, DS2, PACED, read_record
from models.tasks import LoadOptions, beat, get_task
from models.tasks.beat import BEAT_SPEC


def test_split_is_de_chazal_and_excludes_paced() -> None:
    assert len(DS1) == len(DS2) == 22
    assert not set(DS1) & set(DS2)
    assert not set(PACED) & (set(DS1) | set(DS2))
    assert {k for k, v in AAMI_MAP.items() if v == 1} == set("AaJS")


@pytest.mark.datasets("mitdb")
def test_load_one_record_gives_the_contract_shapes(data_root: Path, tmp_path: Path) -> None:
    # Prepare
    task = get_task("beat")
    options = LoadOptions(
        env={"MEDCHAIN_DATA": str(data_root)}, records=["100"], cache_dir=tmp_path
    )
    # Execute
    data = task.load("ds2", options)
    cached = task.load("ds2", options)
    # Assert: record 100 has 2273 beats (2239 N, 33 A, 1 V); a few edge beats are dropped
    counts = data.class_counts(5)
    assert 2260 <= len(data) <= 2273
    assert counts[1] == 33 and counts[2] == 1
    assert data.signal.shape[1:] == (2, BEAT_SPEC.window_len)
    assert data.features.shape[1] == len(BEAT_SPEC.rr_features)
    assert np.all(np.isfinite(data.signal)) and np.all(np.isfinite(data.features))
    # z-scored windows; RR of a ~75 bpm record around 0.8 s
    assert np.allclose(data.signal[:, 0].mean(axis=1), 0, atol=1e-4)
    assert 0.6 < float(np.median(data.features[:, 0])) < 1.0
    assert np.array_equal(cached.signal, data.signal)
    assert set(data.groups) == {"100"}


def test_beat_task_uses_the_shared_template_channel() -> None:
    # Prepare / Execute / Assert: one definition, re-exported for the card's contract text
    assert beat.template_channel is template.template_channel
    assert beat.TemplateTracker is template.TemplateTracker
    assert beat.TEMPLATE_BEATS == 16


@pytest.mark.datasets("mitdb")
def test_unknown_record_is_a_clear_error(data_root: Path) -> None:
    options = LoadOptions(env={"MEDCHAIN_DATA": str(data_root)}, records=["999"])
    with pytest.raises(DataNotFoundError, match=r"record\(s\) \['999'\]"):
        get_task("beat").load("ds1", options)


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    env = {"MEDCHAIN_DATA": str(tmp_path / "none"), "MEDCHAIN_CACHE": str(tmp_path / "c")}
    with pytest.raises(DataNotFoundError, match="medchain data download mitdb"):
        get_task("beat").load("ds1", LoadOptions(env=env, records=["101"]))


def test_missing_record_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="record '101'"):
        read_record(tmp_path, "101")


def test_corrupt_record_is_a_clear_error(tmp_path: Path) -> None:
    # Prepare: a header that promises more samples than the (garbage) signal file holds
    (tmp_path / "101.hea").write_text("101 2 360 650000\n101.dat 212 200 11 1024 0 0 0 MLII\n")
    (tmp_path / "101.dat").write_bytes(b"\x00\x01garbage")
    (tmp_path / "101.atr").write_bytes(b"\xff\xff\xff")
    # Execute / Assert
    with pytest.raises(CorruptInputError, match="cannot read MIT-BIH record"):
        read_record(tmp_path, "101")
