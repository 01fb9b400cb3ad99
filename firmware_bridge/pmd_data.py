"""Decoder of PMD data notifications (characteristic ``FB005C82``).

Header: measurement type u8 (``& 0x3F``), timestamp u64 LE (ns since 2000-01-01 of the last
sample), frame type u8 (``& 0x7F``; bit 7 = delta-compressed); then samples. Supported:

==========  =====  ==========  ==========================================  =======
measurement  type  compressed  samples                                     unit
==========  =====  ==========  ==========================================  =======
ECG          0     no          int24 LE (H10, 130 Hz)                      µV
ACC          0/1/2 no          3 × int8 / int16 / int24 (H10: type 1)      mg
ACC          0     yes         3 × 16-bit deltas × factor × 1000 (Verity)  mg
ACC          1     yes         3 × 16-bit deltas (× factor if ≠ 1)         mg
PPG          0     no          4 × int24 (3 PPG + ambient)                 a.u.
PPG          0     yes         4 × 24-bit deltas × factor (Verity Sense)   a.u.
==========  =====  ==========  ==========================================  =======
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from firmware_bridge.frames import (
    AccFrame,
    EcgFrame,
    InvalidFieldError,
    PmdFrame,
    PpgFrame,
    TruncatedFrameError,
    UnsupportedFrameTypeError,
    UnsupportedMeasurementError,
)
from firmware_bridge.gatt import (
    PMD_COMPRESSED_BIT,
    PMD_EPOCH_OFFSET_NS,
    PMD_MEASUREMENT_MASK,
    MeasurementType,
)
from firmware_bridge.pmd_delta import decode_delta_frames

HEADER = struct.Struct("<BQB")  # measurement type, timestamp (ns since 2000), frame type
# Latest sensor time whose Unix ns still fits a signed 64-bit integer (year 2262); a u64 above it
# is a corrupted frame, and would overflow every int64 time computed from it.
MAX_TIMESTAMP_NS = 2**63 - 1 - PMD_EPOCH_OFFSET_NS
_Scale = Callable[[float], float]


def _signed_le(body: bytes, size: int, channels: int, frame: bytes) -> npt.NDArray[np.int64]:
    step = size * channels
    if len(body) % step:
        raise InvalidFieldError(
            f"{len(body)} sample bytes is not a multiple of {step} ({channels} x {size} B)", frame
        )
    raw = np.frombuffer(body, dtype=np.uint8).reshape(-1, size).astype(np.int64)
    value = np.zeros(raw.shape[0], dtype=np.int64)
    for k in range(size):
        value |= raw[:, k] << (8 * k)
    value -= (value >> (8 * size - 1) & 1) << (8 * size)
    return value.reshape(-1, channels)


# (measurement, frame type, compressed) -> (frame class, decode(body, frame, factor) -> values)
def _raw(size: int, channels: int) -> Callable[[bytes, bytes, float], npt.NDArray[np.float64]]:
    def run(body: bytes, frame: bytes, factor: float) -> npt.NDArray[np.float64]:
        return _signed_le(body, size, channels, frame).astype(np.float64)

    return run


def _delta(
    channels: int, resolution: int, scale: _Scale
) -> Callable[[bytes, bytes, float], npt.NDArray[np.float64]]:
    def run(body: bytes, frame: bytes, factor: float) -> npt.NDArray[np.float64]:
        values = decode_delta_frames(body, channels, resolution, frame).astype(np.float64)
        return values * scale(factor)

    return run


_DECODERS: dict[
    tuple[MeasurementType, int, bool],
    tuple[type[PmdFrame], Callable[[bytes, bytes, float], npt.NDArray[np.float64]]],
] = {
    (MeasurementType.ECG, 0, False): (EcgFrame, _raw(3, 1)),
    (MeasurementType.ACC, 0, False): (AccFrame, _raw(1, 3)),
    (MeasurementType.ACC, 1, False): (AccFrame, _raw(2, 3)),
    (MeasurementType.ACC, 2, False): (AccFrame, _raw(3, 3)),
    # Compressed type 0 arrives in g units scaled by the START response's factor.
    (MeasurementType.ACC, 0, True): (AccFrame, _delta(3, 16, lambda f: f * 1000.0)),
    (MeasurementType.ACC, 1, True): (AccFrame, _delta(3, 16, lambda f: f)),
    (MeasurementType.PPG, 0, False): (PpgFrame, _raw(3, 4)),
    (MeasurementType.PPG, 0, True): (PpgFrame, _delta(4, 24, lambda f: f)),
}
SUPPORTED_MEASUREMENTS = frozenset(m for m, _, _ in _DECODERS)


def decode_pmd_data(data: bytes, *, factor: float = 1.0) -> PmdFrame:
    """Decode one PMD data notification.

    Parameters
    ----------
    data : bytes
        Untrusted notification value.
    factor : float
        The FACTOR setting from the stream's START response (ACC/PPG compressed frames);
        1.0 when the device sent none.

    Returns
    -------
    PmdFrame
        An :class:`EcgFrame` (µV), :class:`AccFrame` (mg) or :class:`PpgFrame` (a.u.).

    Raises
    ------
    TruncatedFrameError
        Shorter than the header, no samples, or a cut-off compressed block.
    UnsupportedMeasurementError, UnsupportedFrameTypeError
        Measurement or frame type this decoder does not handle.
    InvalidFieldError
        Sample bytes that do not divide into whole samples, bad delta widths, a timestamp
        beyond ``MAX_TIMESTAMP_NS``.
    """
    data = bytes(data)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive finite number, got {factor!r}")
    if len(data) < HEADER.size + 1:
        raise TruncatedFrameError("PMD data frame", data, HEADER.size + 1, len(data))
    type_byte, timestamp, frame_byte = HEADER.unpack_from(data)
    if timestamp > MAX_TIMESTAMP_NS:
        raise InvalidFieldError(f"timestamp {timestamp} ns is beyond the year 2262", data)
    code = type_byte & PMD_MEASUREMENT_MASK
    try:
        measurement = MeasurementType(code)
    except ValueError:
        raise UnsupportedMeasurementError(data, code) from None
    if measurement not in SUPPORTED_MEASUREMENTS:
        raise UnsupportedMeasurementError(data, code)
    compressed = bool(frame_byte & PMD_COMPRESSED_BIT)
    frame_type = frame_byte & ~PMD_COMPRESSED_BIT & 0xFF
    entry = _DECODERS.get((measurement, frame_type, compressed))
    if entry is None:
        raise UnsupportedFrameTypeError(data, code, frame_type, compressed)
    cls, decode = entry
    samples = decode(data[HEADER.size :], data, factor)
    return cls(measurement, int(timestamp), frame_type, compressed, samples)
