"""Seeded fuzz tests: any bytes give a frame or a typed DecodeError, never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.capture import H10_BIN_MAGIC, CaptureReader
from firmware_bridge.decode import decode_notification
from firmware_bridge.decode_stream import StreamAssembler
from firmware_bridge.frames import (
    ControlPointResponse,
    DecodeError,
    HeartRateMeasurement,
    MeasurementStopped,
    PmdFeatures,
    PmdFrame,
    PmdSettings,
)
from firmware_bridge.hrs import decode_heart_rate
from firmware_bridge.pmd import parse_control_point, parse_settings
from firmware_bridge.pmd_data import decode_pmd_data
from firmware_bridge.pmd_delta import decode_delta_frames

FUZZ = settings(derandomize=True, max_examples=300, deadline=None)

# Frames that reach the sample decoders: a plausible header + random body.
pmd_frames = st.builds(
    lambda m, ts, ft, body: bytes([m]) + ts.to_bytes(8, "little") + bytes([ft]) + body,
    st.sampled_from([0, 1, 2, 3, 0x42]),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2, 3, 0x80, 0x81, 0x82]),
    st.binary(max_size=300),
)


@FUZZ
@given(st.binary(max_size=64))
def test_heart_rate_fuzz(data: bytes) -> None:
    try:
        frame = decode_heart_rate(data)
    except DecodeError as exc:
        assert exc.data == data
    else:
        assert isinstance(frame, HeartRateMeasurement) and 0 <= frame.hr_bpm <= 0xFFFF


@FUZZ
@given(st.one_of(st.binary(max_size=300), pmd_frames), st.sampled_from([1.0, 2.44e-4]))
def test_pmd_data_fuzz(data: bytes, factor: float) -> None:
    try:
        frame = decode_pmd_data(data, factor=factor)
    except DecodeError as exc:
        assert exc.data == data
    else:
        assert isinstance(frame, PmdFrame)
        assert frame.samples.ndim == 2 and frame.n_samples >= 1
        assert np.all(np.isfinite(frame.samples))


@FUZZ
@given(st.binary(max_size=80), st.integers(1, 4), st.sampled_from([8, 16, 22, 24]))
def test_delta_fuzz(body: bytes, channels: int, resolution: int) -> None:
    try:
        values = decode_delta_frames(body, channels, resolution)
    except DecodeError:
        pass
    else:
        assert values.shape[1] == channels and values.shape[0] >= 1


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.binary(max_size=40).map(lambda b: b"\xf0" + b)))
def test_control_point_fuzz(data: bytes) -> None:
    try:
        frame = parse_control_point(data)
    except DecodeError as exc:
        assert exc.data == data
    else:
        assert isinstance(frame, ControlPointResponse | MeasurementStopped | PmdFeatures)


@FUZZ
@given(st.binary(max_size=60))
def test_settings_fuzz(params: bytes) -> None:
    try:
        assert isinstance(parse_settings(params), PmdSettings)
    except DecodeError:
        pass


@FUZZ
@given(st.sampled_from(["2a37", "5c81", "5c82"]), st.binary(max_size=120))
def test_decode_notification_fuzz(uuid: str, data: bytes) -> None:
    try:
        decode_notification(uuid, data)
    except DecodeError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["2a37", "5c81", "5c82"]), pmd_frames), max_size=8))
def test_assembler_never_raises_and_counts(events: list[tuple[str, bytes]]) -> None:
    # Prepare
    assembler = StreamAssembler(clock_ns=lambda: 0)

    # Execute
    chunks = [c for uuid, data in events for c in assembler.feed(uuid, data)]

    # Assert: every event is accounted for
    c = assembler.counters
    assert len(chunks) == c.frames
    assert c.frames + c.rejected + c.duplicates + len(assembler.responses) <= len(events)


@settings(
    derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.binary(max_size=400))
def test_bin_container_fuzz(tail: bytes) -> None:
    # Prepare
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.bin"
        path.write_bytes(H10_BIN_MAGIC + tail)
        reader = CaptureReader(path)

        # Execute
        records = list(reader)

    # Assert
    assert sum(4 + len(r.data) for r in records) <= len(tail)
    assert reader.truncated + reader.rejected <= 1
