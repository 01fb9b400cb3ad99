"""A corrupted BLE frame is skipped, counted and logged with its hex; the stream goes on.

The issue: one PMD frame whose timestamp bytes were corrupted raised OverflowError in the
stream assembler and ended monitoring after 28 beats. Frames here are the Polar SDK's own
vectors and H10 notifications built from simulated ECG (``h10_frames``), corrupted at random.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.capture_replay import CaptureReplaySource
from firmware_bridge.decode_stream import StreamAssembler
from firmware_bridge.gatt import PMD_DATA_UUID
from medchain.cli import main
from tests.firmware_bridge.h10_frames import TIMESTAMP, ecg_frames, write_bin
from tests.firmware_bridge.vectors import sdk

SDK_FRAMES = [
    sdk.PMD_ECG_TYPE0,
    sdk.PMD_ACC_RAW_TYPE1,
    sdk.PMD_ACC_COMPRESSED_TYPE0,
    sdk.PMD_ACC_COMPRESSED_TYPE1,
]
STREAM = ecg_frames(24.0)  # 42 consecutive frames
INT64_MAX = 2**63 - 1


Damage = tuple[int, str, int, int]  # frame index, how, position, value


def damage(frame: bytes, how: str, pos: int, value: int) -> bytes:
    """``frame`` with one kind of damage: flipped bit, overwritten byte, garbage timestamp,
    cut off, or grown (``pos`` and ``value`` are wrapped into range)."""
    data = bytearray(frame)
    if not data:
        return frame
    if how == "flip":
        data[pos % len(data)] ^= 1 << (value % 8)
    elif how == "byte":
        data[pos % len(data)] = value % 256
    elif how == "timestamp":
        data[TIMESTAMP] = (value % 2**64).to_bytes(8, "little")
    elif how == "truncate":
        data = data[: pos % len(data)]
    else:
        data += value.to_bytes(8, "little") * (1 + pos % 3)
    return bytes(data)


FRAMES = list(SDK_FRAMES) + list(STREAM)
damages = st.lists(
    st.tuples(
        st.integers(0, len(FRAMES) - 6),  # never the last 5: they show the stream goes on
        st.sampled_from(["flip", "byte", "timestamp", "truncate", "extend"]),
        st.integers(0, 300),
        st.one_of(st.integers(2**62, 2**64 - 1), st.integers(0, 2**64 - 1)),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(damages)
def test_damaged_frames_never_stop_the_stream(damaged: list[Damage]) -> None:
    # Prepare: the SDK vectors then the simulated stream, 1-4 frames damaged
    frames = list(FRAMES)
    for i, how, pos, value in damaged:
        frames[i] = damage(frames[i], how, pos, value)
    assembler = StreamAssembler(clock_ns=lambda: 0)

    # Execute
    per_frame = [assembler.feed(PMD_DATA_UUID, f) for f in frames]

    # Assert: every frame is a chunk, a reject or a duplicate; chunks are usable; the good
    # frames at the end still come out as ECG
    c = assembler.counters
    assert c.frames + c.rejected + c.duplicates == len(frames)
    chunks = [ch for out in per_frame for ch in out]
    assert all(np.all(np.isfinite(ch.samples)) and 0 <= ch.t0_ns <= INT64_MAX for ch in chunks)
    assert all(len(out) == 1 and out[0].kind == "ecg" for out in per_frame[-5:])
    ecg_seq = [ch.seq for ch in chunks if ch.kind == "ecg"]
    assert ecg_seq == sorted(ecg_seq)


@pytest.mark.parametrize("top", [0x80, 0xFF])
def test_a_frame_with_a_timestamp_beyond_int64_is_skipped_and_logged(
    top: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the frame: its timestamp's top byte corrupted
    frames = list(STREAM[:10])
    bad = bytearray(frames[5])
    bad[8] = top
    frames[5] = bytes(bad)
    assembler = StreamAssembler(clock_ns=lambda: 0)

    # Execute
    with caplog.at_level(logging.WARNING):
        out = [assembler.feed(PMD_DATA_UUID, f) for f in frames]

    # Assert: skipped, counted, its hex in the log; the frames after it continue the stream
    assert out[5] == [] and assembler.counters.rejected == 1
    assert bytes(bad[:10]).hex(" ") in caplog.text
    assert [len(o) for o in out[6:]] == [1] * 4
    assert out[6][0].seq == out[4][0].seq + 2 * 73  # the skipped frame's samples are a gap


def test_a_lone_jump_far_ahead_is_skipped_and_a_confirmed_one_accepted() -> None:
    # Prepare: frame 5 jumps a day ahead alone (corrupt); from frame 12 on the clock really
    # moved a day ahead (the sensor's time was set)
    day = 86_400 * 10**9
    frames = list(STREAM[:20])

    def shifted(f: bytes) -> bytes:
        ts = int.from_bytes(f[TIMESTAMP], "little") + day
        return f[:1] + ts.to_bytes(8, "little") + f[9:]

    frames[5] = shifted(frames[5])
    frames[12:] = [shifted(f) for f in frames[12:]]
    assembler = StreamAssembler(clock_ns=lambda: 0)

    # Execute
    out = [assembler.feed(PMD_DATA_UUID, f) for f in frames]

    # Assert: the lone jump skipped; of the real one only its first frame is held back
    assert [i for i, o in enumerate(out) if not o] == [5, 12]
    assert assembler.counters.rejected == 2
    assert out[13][0].t0_ns - out[11][0].t0_ns > day


def test_capture_replay_goes_on_after_a_corrupted_frame(tmp_path: Path) -> None:
    # Prepare: a .bin capture whose 6th frame's timestamp is garbage
    frames = list(STREAM)
    frames[5] = frames[5][:1] + b"\xff" * 8 + frames[5][9:]
    path = write_bin(tmp_path / "h10.bin", frames)
    source = CaptureReplaySource(path, speed=None)

    async def run() -> int:
        async with source:
            return sum([1 async for _ in source.chunks()])

    # Execute
    n = asyncio.run(run())

    # Assert
    assert n == len(frames) - 1
    assert source.stats.rejected == 1 and source.stats.frames == len(frames) - 1


def test_edge_monitoring_continues_past_a_corrupted_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the same 2-minute capture, intact and with one frame's timestamp corrupted
    frames = ecg_frames(120.0, seed=1)
    good = write_bin(tmp_path / "good.bin", frames)
    broken = list(frames)
    broken[40] = broken[40][:8] + b"\xff" + broken[40][9:]
    bad = write_bin(tmp_path / "bad.bin", broken)

    def beats(path: Path) -> int:
        buffer = tmp_path / f"{path.stem}.sqlite"
        rc = main(["edge", "--source", f"replay:{path}", "--speed", "max", "--buffer", str(buffer)])
        assert rc == 0
        return int(json.loads(capsys.readouterr().out)["beats"])

    # Execute
    intact, damaged = beats(good), beats(bad)

    # Assert: all but the beats of the skipped 0.56 s are there (the issue: 28 beats, then exit)
    assert intact > 120
    assert damaged >= intact - 3
