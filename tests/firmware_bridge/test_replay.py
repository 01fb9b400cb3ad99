"""WFDB and CSV replay sources: chunking, units, channel choice, pacing, bad input."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError, CorruptInputError, DataNotFoundError
from common.types import SignalChunk, StreamKind
from firmware_bridge.csv_replay import CsvReplaySource
from firmware_bridge.replay import WfdbReplaySource
from firmware_bridge.sources import Source, open_source, parse_speed
from tests.support.datasets import dataset_path


async def _collect(source: Source, limit: int | None = None) -> list[SignalChunk]:
    out: list[SignalChunk] = []
    async with source:
        async for chunk in source.chunks():
            out.append(chunk)
            if limit is not None and len(out) >= limit:
                break
    return out


def _mitdb_100() -> Path:
    return dataset_path("mitdb") / "100"


def test_wfdb_replay_yields_contiguous_ecg_in_microvolt() -> None:
    # Prepare
    import wfdb

    ref = wfdb.rdrecord(str(_mitdb_100()), channels=[0], sampto=3600).p_signal[:, 0] * 1000
    source = WfdbReplaySource(_mitdb_100(), channels=["MLII"], speed=None, chunk_s=2.0, t0_ns=0)

    # Execute
    chunks = asyncio.run(_collect(source, limit=5))

    # Assert
    assert all(c.kind is StreamKind.ECG and c.fs == 360.0 for c in chunks)
    assert [c.seq for c in chunks] == [0, 720, 1440, 2160, 2880]
    assert [c.t0_ns for c in chunks] == [0, 2_000_000_000, 4_000_000_000, 6_000_000_000, 8 * 10**9]
    got = np.concatenate([c.samples for c in chunks])[:, 0]
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert source.stats.chunks == 5 and source.stats.samples == 3600
    assert source.name.startswith("wfdb:100 MLII")


def test_wfdb_replay_two_channels_by_index() -> None:
    # Execute
    chunks = asyncio.run(_collect(WfdbReplaySource(_mitdb_100(), channels=[0, 1], speed=None), 1))

    # Assert
    assert chunks[0].samples.shape == (360, 2)


def test_wfdb_replay_unknown_channel_is_a_clear_error() -> None:
    with pytest.raises(CorruptInputError, match="no channel 'V9'"):
        asyncio.run(_collect(WfdbReplaySource(_mitdb_100(), channels=["V9"])))


def test_wfdb_replay_missing_record(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        asyncio.run(_collect(WfdbReplaySource(tmp_path / "nope")))


def test_real_time_pacing_waits_for_each_chunk(tmp_path: Path) -> None:
    # Prepare: 0.3 s of data at 100 Hz played at 3x speed should take about 0.1 s (>= 0.09 s)
    path = tmp_path / "x.csv"
    path.write_text("t,ecg\n" + "".join(f"{i / 100},{i}\n" for i in range(30)))
    source = CsvReplaySource(path, speed=3.0, chunk_s=0.1)

    # Execute
    start = time.monotonic()
    chunks = asyncio.run(_collect(source))
    elapsed = time.monotonic() - start

    # Assert: a lower bound only (no flaky upper bound)
    assert len(chunks) == 3 and elapsed >= 0.09


def test_csv_replay_with_time_column_estimates_fs(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "rec.csv"
    rows = "".join(f"{i / 250:.4f},{i},{-i}\n" for i in range(500))
    path.write_text("time_s,lead1,lead2\n" + rows)

    # Execute
    chunks = asyncio.run(_collect(CsvReplaySource(path, columns=["lead2"], speed=None, scale=2)))

    # Assert
    assert chunks[0].fs == pytest.approx(250.0)
    assert chunks[0].samples.shape == (250, 1)
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in chunks])[:, 0], -2.0 * np.arange(500)
    )


@pytest.mark.parametrize(
    ("name", "scale"), [("timestamp_ms", 1e3), ("Time_us", 1e6), ("timestamp", 1.0)]
)
def test_a_time_column_with_a_unit_sets_the_rate_and_is_not_replayed(
    tmp_path: Path, name: str, scale: float
) -> None:
    # Prepare: a watch export's epoch time in ms was replayed as the ECG (a ramp: no beats, no
    # error), even with fs given
    path = tmp_path / "rec.csv"
    rows = "".join(f"{(1.7e9 + i / 250) * scale:.6f},{i}\n" for i in range(500))
    path.write_text(f"{name},ecg\n" + rows)
    # Execute
    chunks = asyncio.run(_collect(CsvReplaySource(path, speed=None)))
    with_fs = asyncio.run(_collect(CsvReplaySource(path, fs=250.0, speed=None)))
    # Assert
    assert chunks[0].fs == pytest.approx(250.0, rel=1e-3)
    for got in (chunks, with_fs):
        assert got[0].samples.shape[1] == 1
        np.testing.assert_array_equal(
            np.concatenate([c.samples for c in got])[:, 0], np.arange(500)
        )


def test_csv_replay_fills_gaps_and_rejects_garbage(tmp_path: Path) -> None:
    # Prepare
    good = tmp_path / "gap.csv"
    good.write_text("a\n1\nnan\n3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("a\n1\nx\n")

    # Execute
    chunks = asyncio.run(_collect(CsvReplaySource(good, fs=100, speed=None)))

    # Assert
    np.testing.assert_array_equal(chunks[0].samples[:, 0], [1, 1, 3])
    with pytest.raises(CorruptInputError, match="non-numeric"):
        asyncio.run(_collect(CsvReplaySource(bad, fs=100)))
    with pytest.raises(CorruptInputError, match="no time column"):
        asyncio.run(_collect(CsvReplaySource(good)))


@pytest.mark.parametrize("fs", [250.0, 360.0, 128.0])
def test_csv_rate_from_a_rounded_time_column_is_the_rate(tmp_path: Path, fs: float) -> None:
    # Prepare: timestamps written with 5 decimals (360 Hz steps become 0.00278 / 0.00277 s)
    path = tmp_path / "t.csv"
    t = np.arange(3000) / fs
    np.savetxt(path, np.column_stack([t, np.sin(t)]), delimiter=",", header="time,ecg",
               comments="", fmt="%.5f")  # fmt: skip
    # Execute
    chunks = asyncio.run(_collect(CsvReplaySource(path, speed=None)))
    # Assert: the rate as written, not 249.99999999999977 or 359.71 (failed before)
    assert chunks[0].fs == fs


@pytest.mark.parametrize(
    ("spec", "cls", "speed"),
    [
        ("replay:/x/100?speed=max", WfdbReplaySource, None),
        ("wfdb:/x/100.hea?channel=MLII&speed=2", WfdbReplaySource, 2.0),
        ("replay:/x/r.csv?fs=250", CsvReplaySource, 1.0),
        ("csv:/x/r.txt?speed=0", CsvReplaySource, None),
    ],
)
def test_open_source_dispatches_on_scheme_and_suffix(
    spec: str, cls: type, speed: float | None
) -> None:
    # Execute
    source = open_source(spec)

    # Assert
    assert isinstance(source, cls) and isinstance(source, Source)
    assert source.speed == speed


def test_open_source_options_and_errors() -> None:
    # Execute
    src = open_source("replay:/x/100", channels="0,MLII", speed="max")

    # Assert
    assert isinstance(src, WfdbReplaySource) and src.channels == [0, "MLII"]
    with pytest.raises(ConfigError, match="scheme"):
        open_source("/x/100")
    with pytest.raises(ConfigError, match="unknown source scheme"):
        open_source("ftp:/x")
    with pytest.raises(ConfigError, match="unknown stream kind"):
        open_source("replay:/x/100?kind=eeg")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max", None),
        (None, None),
        ("1", 1.0),
        (0, None),
        (2.5, 2.5),
        ("realtime", 1.0),
        ("10x", 10.0),
    ],
)
def test_parse_speed(value: str | float | None, expected: float | None) -> None:
    assert parse_speed(value) == expected


@pytest.mark.parametrize("value", ["fast", -1.0, float("nan")])
def test_parse_speed_rejects(value: str | float) -> None:
    with pytest.raises(ConfigError):
        parse_speed(value)


def test_replay_segment_from_spec_options() -> None:
    # Prepare
    spec = f"replay:{_mitdb_100()}?speed=max&start_s=10&duration_s=2.5&chunk_s=1"

    # Execute
    chunks = asyncio.run(_collect(open_source(spec, t0_ns=0)))

    # Assert: 900 samples from sample 3600, seq counts from the segment start
    assert [c.n_samples for c in chunks] == [360, 360, 180]
    assert [c.seq for c in chunks] == [0, 360, 720]
    assert [c.t0_ns for c in chunks] == [0, 1_000_000_000, 2_000_000_000]


def test_wfdb_annotations_follow_the_replayed_segment() -> None:
    # Prepare
    import wfdb

    full = wfdb.rdann(str(_mitdb_100()), "atr")
    source = WfdbReplaySource(_mitdb_100(), start_s=10.0, duration_s=20.0)

    # Execute
    samples, symbols = source.annotations()

    # Assert
    inside = (full.sample >= 3600) & (full.sample < 3600 + 7200)
    np.testing.assert_array_equal(samples, full.sample[inside] - 3600)
    assert symbols == [s for s, k in zip(full.symbol, inside, strict=True) if k]
    assert samples.min() >= 0 and samples.max() < 7200 and "N" in symbols


@pytest.mark.parametrize(("unit", "scale"), [("mmHg", None), ("%", None), ("uV", 1.0), ("NU", 1e3)])
def test_an_ecg_replay_takes_only_voltages(tmp_path: Path, unit: str, scale: float | None) -> None:
    # Prepare: a record whose first signal is a blood-pressure trace was replayed as ECG (any
    # unit it did not know was taken as mV): 120 mmHg became 120,000 µV of "ECG"
    import wfdb

    x = (90 + 30 * np.sin(np.arange(0, 10, 1 / 250))).reshape(-1, 1)
    wfdb.wrsamp("r", fs=250, units=[unit], sig_name=["ABP"], p_signal=x, fmt=["16"],
                adc_gain=[100.0], baseline=[0], write_dir=str(tmp_path))  # fmt: skip
    source = WfdbReplaySource(tmp_path / "r", speed=None)
    # Execute / Assert: refused naming the unit, or scaled to µV
    if scale is None:
        with pytest.raises(CorruptInputError, match=f"'ABP' is in '{unit}', not a voltage"):
            asyncio.run(_collect(source))
    else:
        got = np.concatenate([c.samples for c in asyncio.run(_collect(source))])
        np.testing.assert_allclose(got, x * scale, atol=0.01 * scale)


def test_annotations_at_their_own_rate_land_on_the_streams_samples(tmp_path: Path) -> None:
    # Prepare: a 250 Hz record whose annotation file counts at 500 Hz (WFDB allows it); its
    # positions were returned as they stood: every reference beat twice as late
    import wfdb

    x = np.zeros((2500, 1))
    wfdb.wrsamp("r", fs=250, units=["mV"], sig_name=["ECG"], p_signal=x, fmt=["16"],
                write_dir=str(tmp_path))  # fmt: skip
    wfdb.wrann("r", "atr", np.array([1000, 2000, 4000]), np.array(["N", "V", "N"]), fs=500,
               write_dir=str(tmp_path))  # fmt: skip
    # Execute
    samples, symbols = WfdbReplaySource(tmp_path / "r", start_s=2.0).annotations()
    # Assert: in the stream's 250 Hz samples, counted from the replayed segment's start
    assert samples.tolist() == [0, 500, 1500] and symbols == ["N", "V", "N"]
