"""PMD data frames: ECG, ACC raw and delta-compressed, PPG; timestamps; errors."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.frames import (
    AccFrame,
    EcgFrame,
    InvalidFieldError,
    PpgFrame,
    TruncatedFrameError,
    UnsupportedFrameTypeError,
    UnsupportedMeasurementError,
)
from firmware_bridge.gatt import PMD_EPOCH_OFFSET_NS, MeasurementType
from firmware_bridge.pmd_data import decode_pmd_data
from firmware_bridge.pmd_delta import decode_delta_frames
from tests.firmware_bridge.vectors import sdk


def test_ecg_type0_sdk_vector() -> None:
    # Execute
    frame = decode_pmd_data(sdk.PMD_ECG_TYPE0)

    # Assert: whole object
    assert isinstance(frame, EcgFrame)
    assert frame.as_dict() == {
        "type": "pmd",
        "measurement": "ecg",
        "timestamp_ns": 2_000_000_000,
        "unix_ns": 946_684_802_000_000_000,
        "frame_type": 0,
        "compressed": False,
        "unit": "uV",
        "n_samples": 2,
        "samples": [[-32766.0], [32770.0]],
    }


def test_acc_raw_type1_sdk_vector() -> None:
    # Execute
    frame = decode_pmd_data(sdk.PMD_ACC_RAW_TYPE1)

    # Assert
    assert isinstance(frame, AccFrame) and frame.unit == "mg"
    assert frame.samples.shape == (36, 3)
    np.testing.assert_array_equal(frame.samples[:2], [[-9, -1, 999], [-8, -2, 997]])
    np.testing.assert_array_equal(frame.samples[-1], [-9, -2, 998])


def test_acc_compressed_type0_sdk_vector() -> None:
    # Prepare
    factor = sdk.ACC_COMPRESSED_TYPE0_FACTOR

    # Execute
    frame = decode_pmd_data(sdk.PMD_ACC_COMPRESSED_TYPE0, factor=factor)

    # Assert: the SDK truncates factor * raw * 1000 to int
    assert isinstance(frame, AccFrame) and frame.compressed and frame.frame_type == 0
    assert frame.n_samples == 57
    for index, raw in sdk.ACC_COMPRESSED_TYPE0_RAW.items():
        expected = [int(np.float32(factor) * r * np.float32(1000)) for r in raw]
        np.testing.assert_array_equal(np.trunc(frame.samples[index]), expected)
    assert np.all(np.abs(frame.samples) <= 8 * 1000)  # within the ±8 g range


def test_acc_compressed_type0_sdk_timestamps() -> None:
    # Prepare: SDK test: previous frame timestamp 100 ns
    frame = decode_pmd_data(sdk.PMD_ACC_COMPRESSED_TYPE0, factor=sdk.ACC_COMPRESSED_TYPE0_FACTOR)
    delta = (2_000_000_000 - 100) / 57

    # Execute
    times = frame.sample_times_ns(100, 52.0)

    # Assert
    assert times[-1] == 2_000_000_000 + PMD_EPOCH_OFFSET_NS
    assert times[0] - PMD_EPOCH_OFFSET_NS == pytest.approx(round(100 + delta), abs=1)
    assert np.all(np.diff(times) > 0)


def test_first_frame_times_from_sample_rate() -> None:
    # Execute
    times = decode_pmd_data(sdk.PMD_ECG_TYPE0).sample_times_ns(None, 130.0)

    # Assert
    assert times.tolist() == [
        946_684_802_000_000_000 - round(1e9 / 130),
        946_684_802_000_000_000,
    ]


def test_acc_compressed_type1_sdk_vector() -> None:
    # Execute
    frame = decode_pmd_data(sdk.PMD_ACC_COMPRESSED_TYPE1)

    # Assert
    assert frame.timestamp_ns == 0x65
    assert frame.samples.tolist() == [[-15, 20, 1008], [-20, 17, 1008]]


def test_ppg_compressed_and_raw() -> None:
    # Prepare: reference (100, -2, 3, 0x3FFFFF) as 24-bit, one block of 2 samples x 4 bit
    ref = b"".join(v.to_bytes(3, "little", signed=True) for v in (100, -2, 3, 0x3FFFFF))
    # deltas sample1: (+1, -1, 0, +7), sample2: (-8, 0, 1, 0) as 4-bit LSB-first nibbles
    nibbles = [1, 0xF, 0, 7, 8, 0, 1, 0]
    packed = bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, 8, 2))
    frame_bytes = (
        bytes([1]) + (5).to_bytes(8, "little") + bytes([0x80]) + ref + bytes([4, 2]) + packed
    )
    raw = bytes([1]) + (5).to_bytes(8, "little") + bytes([0]) + ref

    # Execute
    compressed = decode_pmd_data(frame_bytes, factor=2.0)
    plain = decode_pmd_data(raw)

    # Assert
    assert isinstance(compressed, PpgFrame) and compressed.unit == "au"
    # 0x3FFFFF stays positive: at 24-bit resolution only bit 23 is the sign
    assert (compressed.samples / 2).tolist() == [
        [100, -2, 3, 0x3FFFFF],
        [101, -3, 3, 0x3FFFFF + 7],
        [93, -3, 4, 0x3FFFFF + 7],
    ]
    assert plain.samples.tolist() == [[100, -2, 3, 0x3FFFFF]]


def test_delta_decoder_reference_sign_extension_and_zero_width() -> None:
    # Prepare: 16-bit ref 0xFFFF = -1, block width 0 (no change) x 3 samples, 1 channel
    body = bytes([0xFF, 0xFF, 0, 3])

    # Execute
    values = decode_delta_frames(body, 1, 16)

    # Assert
    assert values.tolist() == [[-1], [-1], [-1], [-1]]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedFrameError),
        (bytes(10), TruncatedFrameError),  # header only, no samples
        (bytes([0]) + bytes(8) + bytes([0]) + bytes(4), InvalidFieldError),  # 4 B: not int24s
        (bytes([4]) + bytes(8) + bytes([0, 1]), UnsupportedMeasurementError),  # type 4 unknown
        (bytes([3]) + bytes(8) + bytes([0, 1]), UnsupportedMeasurementError),  # PPI not decoded
        (bytes([0]) + bytes(8) + bytes([0x80, 1, 2, 3]), UnsupportedFrameTypeError),  # ECG delta
        (bytes([2]) + bytes(8) + bytes([0x05, 1, 2, 3]), UnsupportedFrameTypeError),
        (bytes([2]) + bytes(8) + bytes([0x80, 1, 2, 3]), TruncatedFrameError),  # ref cut
        (bytes([2]) + bytes(8) + bytes([0x80]) + bytes(6) + bytes([8]), TruncatedFrameError),
        (bytes([2]) + bytes(8) + bytes([0x80]) + bytes(6) + bytes([8, 2, 1]), TruncatedFrameError),
        (bytes([2]) + bytes(8) + bytes([0x80]) + bytes(6) + bytes([33, 0]), InvalidFieldError),
    ],
)
def test_malformed_frames_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        decode_pmd_data(data)
    assert info.value.data == data  # type: ignore[attr-defined]


def test_measurement_byte_is_masked() -> None:
    # Prepare: upper bits of byte 0 set (0x40 | ECG)
    data = bytes([0x40]) + sdk.PMD_ECG_TYPE0[1:]

    # Execute / Assert
    assert decode_pmd_data(data).measurement is MeasurementType.ECG


def test_bad_factor_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="factor"):
        decode_pmd_data(sdk.PMD_ECG_TYPE0, factor=float("nan"))


def test_error_message_shows_hex() -> None:
    with pytest.raises(TruncatedFrameError, match=r"need 11 bytes, have 3 \[3 B: 00 01 02\]"):
        decode_pmd_data(b"\x00\x01\x02")


@pytest.mark.parametrize(
    ("frame_type", "size"),
    [(0, 1), (2, 3)],  # ACC raw type 0: int8, type 2: int24 (Polar AccData.kt)
)
def test_acc_raw_int8_and_int24(frame_type: int, size: int) -> None:
    # Prepare: two samples (1, -2, 3), (-128, 127, 0)
    values = [1, -2, 3, -128, 127, 0]
    body = b"".join(v.to_bytes(size, "little", signed=True) for v in values)
    data = bytes([2]) + (7).to_bytes(8, "little") + bytes([frame_type]) + body

    # Execute
    frame = decode_pmd_data(data)

    # Assert
    assert isinstance(frame, AccFrame) and frame.frame_type == frame_type
    assert frame.samples.tolist() == [[1, -2, 3], [-128, 127, 0]]
