"""A CSV replay's time column: dropouts replayed as gaps, time going back refused, Excel's BOM,
an ``fs`` that contradicts the column."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from common.errors import CorruptInputError
from common.types import SignalChunk
from firmware_bridge.csv_replay import CsvReplaySource, time_grid
from models.rhythm_records import read_recording

FS = 250.0


def _write(path: Path, t: np.ndarray, header: str = "time_s,ecg", encoding: str = "utf-8") -> Path:
    x = 1000 * np.sin(2 * np.pi * t)
    lines = [header] + [f"{a:.4f},{b:.2f}" for a, b in zip(t, x, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def _replay(source: CsvReplaySource) -> list[SignalChunk]:
    async def run() -> list[SignalChunk]:
        async with source:
            return [c async for c in source.chunks()]

    return asyncio.run(run())


def test_a_dropout_in_the_time_column_is_replayed_as_a_gap(tmp_path: Path) -> None:
    # Prepare: 10 s, a 10 s dropout, 10 s (was replayed as 20 s back to back: the chunks after
    # the dropout stamped 10 s early, no gap counted, an RR invented across the join)
    t = np.concatenate([np.arange(0, 10, 1 / FS), np.arange(20, 30, 1 / FS)])
    source = CsvReplaySource(_write(tmp_path / "gap.csv", t), speed=None, t0_ns=0)
    # Execute
    chunks = _replay(source)
    # Assert: the chunk after the dropout starts at 20 s, its seq jumps, the gap is counted
    after = next(c for c in chunks if c.t0_ns >= 10e9)
    assert after.t0_ns == 20_000_000_000 and after.seq == 5000
    assert source.stats.gaps == 1 and source.stats.missing_samples == 2500
    assert sum(c.n_samples for c in chunks) == t.size  # every sample replayed once
    assert all(c.n_samples <= FS for c in chunks) and chunks[0].fs == FS


def test_time_going_back_is_refused_naming_the_row(tmp_path: Path) -> None:
    # Prepare: two exports pasted together (time restarts at 0): was replayed as one recording
    t = np.concatenate([np.arange(0, 10, 1 / FS), np.arange(0, 10, 1 / FS)])
    path = _write(tmp_path / "restart.csv", t)
    # Execute / Assert
    with pytest.raises(CorruptInputError, match="does not increase at data row 2501"):
        _replay(CsvReplaySource(path, speed=None))


def test_an_excel_bom_does_not_hide_the_time_column(tmp_path: Path) -> None:
    # Prepare: Excel's "CSV UTF-8" starts with a BOM: the header read '\ufefftime', and with fs
    # given the time ramp was replayed as the ECG
    t = np.arange(0, 4, 1 / FS)
    path = _write(tmp_path / "excel.csv", t, header="time,ecg", encoding="utf-8-sig")
    # Execute
    for fs in (None, FS):
        source = CsvReplaySource(path, fs=fs, speed=None)
        chunks = _replay(source)
        # Assert
        assert source.channel_names == ["ecg"]
        np.testing.assert_allclose(
            chunks[0].samples[:3, 0], np.round(1000 * np.sin(2 * np.pi * t[:3]), 2)
        )


def test_an_fs_given_with_the_file_wins_over_a_time_column_that_contradicts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A bare "time" column written in ms reads as seconds: the fs given must still replay it
    path = _write(tmp_path / "r.csv", np.arange(0, 4000, 4.0), header="time,ecg")
    with caplog.at_level(logging.WARNING):
        chunks = _replay(CsvReplaySource(path, fs=FS, speed=None, t0_ns=0))
    assert sum(c.n_samples for c in chunks) == 1000 and chunks[-1].seq == 750
    assert "steps at 0.25 Hz, not the 250 Hz given" in caplog.text
    with pytest.raises(CorruptInputError, match="steps at 0.25 Hz, not 250 Hz"):
        time_grid(np.arange(0, 4000, 4.0), FS, "r.csv")  # the pure check itself


def test_the_rate_of_a_jittered_column_with_a_dropout_is_its_rate(tmp_path: Path) -> None:
    # 130 Hz in whole ms (7 and 8 ms steps) with a 5 s dropout read 125 Hz (the median step)
    t = np.round(np.concatenate([np.arange(1300), np.arange(1950, 3250)]) / 130.0, 3)
    source = CsvReplaySource(_write(tmp_path / "h10.csv", t), speed=None)
    chunks = _replay(source)
    assert chunks[0].fs == pytest.approx(130.0, abs=0.05) and source.stats.gaps == 1


def test_time_grid_tolerates_jittered_timestamps() -> None:
    # 130 Hz (a Polar H10's ECG) written in whole ms: steps of 7 or 8 ms are no gap
    t = np.round(np.arange(1000) / 130.0, 3)
    assert np.array_equal(time_grid(t, 130.0, "h10.csv"), np.arange(1000))


def test_a_rhythm_recording_with_a_gap_is_one_clear_error(tmp_path: Path) -> None:
    t = np.concatenate([np.arange(0, 15, 1 / FS), np.arange(25, 40, 1 / FS)])
    path = _write(tmp_path / "A0001.csv", t)
    with pytest.raises(CorruptInputError, match="1 gap"):
        read_recording(path)
