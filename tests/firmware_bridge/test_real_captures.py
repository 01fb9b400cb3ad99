"""Every real Polar H10 frame in the shared captures decodes (read in place, never copied)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from common.types import StreamKind
from firmware_bridge.capture import CaptureReader
from firmware_bridge.capture_replay import CaptureReplaySource
from firmware_bridge.frames import ControlPointResponse, EcgFrame
from firmware_bridge.gatt import ControlPointOp, ResponseStatus
from firmware_bridge.pmd import parse_control_point
from firmware_bridge.pmd_data import decode_pmd_data
from tests.support.datasets import dataset_path

BIN_NAME = "hr_data_2023-01-13_11-40-07.bin"


@pytest.fixture(scope="module")
def captures() -> Path:
    return dataset_path("polar_h10_ble_captures")


def _demo_lines(path: Path, tag: str) -> list[bytes]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith(f"{tag}:"):
            out.append(bytes(int(h, 16) for h in re.findall(r"'([0-9a-fA-F]{2})'", line)))
    return out


def test_ecg2_demo_data_lines_decode(captures: Path) -> None:
    # Prepare
    lines = _demo_lines(captures / "ecg2_demo.txt", "DATA")

    # Execute
    frames = [decode_pmd_data(b) for b in lines]

    # Assert
    assert len(frames) == 52
    assert all(isinstance(f, EcgFrame) and f.n_samples == 73 for f in frames)
    ts = np.array([f.timestamp_ns for f in frames])
    assert np.all(np.diff(ts) > 0)
    # 73 samples per frame at ~130 Hz: ~561 ms between frame timestamps
    assert np.median(np.diff(ts)) / 1e6 == pytest.approx(73 / 130 * 1000, rel=0.01)
    first = frames[0]
    assert first.samples[:3, 0].tolist() == [0x2C1B, 0x2BA8, 0x2BD4]  # 1b 2c 00, a8 2b 00, ...


def test_ecg2_demo_ctrl_lines(captures: Path) -> None:
    # Execute
    responses = [parse_control_point(b) for b in _demo_lines(captures / "ecg2_demo.txt", "CTRL")]

    # Assert
    assert responses == [
        ControlPointResponse(
            ControlPointOp.REQUEST_MEASUREMENT_START, 0, ResponseStatus.SUCCESS, False, b"\x00"
        ),
        ControlPointResponse(ControlPointOp.STOP_MEASUREMENT, 0, ResponseStatus.SUCCESS),
    ]


def test_bin_capture_all_frames_decode_and_tail_is_counted(captures: Path) -> None:
    # Prepare
    reader = CaptureReader(captures / BIN_NAME)

    # Execute
    frames = [decode_pmd_data(r.data) for r in reader]

    # Assert
    assert len(frames) == 12_355
    assert reader.truncated == 1 and reader.rejected == 0
    samples = np.concatenate([f.samples[:, 0] for f in frames])
    assert samples.size == 901_915
    # PROVENANCE.md says -6206..10201 µV; the true extremes are a motion artefact ~35 s in
    # (neighbouring samples agree, e.g. bytes 93 ba ff = -17773), so we assert what decodes.
    assert (samples.min(), samples.max()) == (-17773, 18697)
    assert np.count_nonzero((samples < -6206) | (samples > 10201)) == 195
    ts = np.array([f.timestamp_ns for f in frames], dtype=np.int64)
    assert np.all(np.diff(ts) > 0)
    span_s = (ts[-1] - ts[0]) / 1e9
    assert span_s == pytest.approx(6934.8, abs=0.1)
    assert (samples.size - 73) / span_s == pytest.approx(130.05, abs=0.01)


def test_bin_capture_replays_as_one_continuous_ecg_stream(captures: Path) -> None:
    # Prepare
    source = CaptureReplaySource(captures / BIN_NAME, speed=None)

    async def run() -> tuple[int, int, int]:
        n = expected_seq = 0
        async with source:
            async for chunk in source.chunks():
                assert chunk.kind is StreamKind.ECG and chunk.seq == expected_seq
                expected_seq += chunk.n_samples
                n += 1
        return n, expected_seq, source.stats.truncated

    # Execute
    n_chunks, n_samples, truncated = asyncio.run(run())

    # Assert
    assert (n_chunks, n_samples, truncated) == (12_355, 901_915, 1)
    assert source.stats.gaps == 0 and source.stats.rejected == 0
