"""Delta-compressed PMD sample blocks (Polar SDK ``parseDeltaFramesAll``).

Layout: a reference sample (``channels × ceil(resolution / 8)`` bytes, signed little-endian),
then blocks ``[delta bit width u8, sample count u8, packed deltas]`` where the packed deltas
take ``ceil(width × count × channels / 8)`` bytes, read LSB-first as one little-endian bit
stream, channel-interleaved; each delta is a ``width``-bit two's-complement value added to the
previous sample of its channel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from firmware_bridge.frames import InvalidFieldError, TruncatedFrameError

MAX_DELTA_WIDTH = 32  # the SDK accumulates in 32-bit ints; wider deltas are corrupt input


def _reference(body: bytes, channels: int, resolution: int) -> list[int]:
    size = (resolution + 7) // 8
    mask = -1 << (resolution - 1)
    ref = []
    for c in range(channels):
        value = int.from_bytes(body[c * size : (c + 1) * size], "little", signed=True)
        # Same sign extension as the SDK: any bit at or above the resolution's sign bit.
        ref.append(value | mask if value & mask else value)
    return ref


def decode_delta_frames(
    body: bytes, channels: int, resolution: int, frame: bytes | None = None
) -> npt.NDArray[np.int64]:
    """Decode a delta-compressed sample body.

    Parameters
    ----------
    body : bytes
        Samples part of the frame (after the 10-byte PMD header).
    channels : int
        Values per sample (ACC 3, PPG 4).
    resolution : int
        Bits of the reference sample (ACC 16, PPG 24).
    frame : bytes, optional
        The whole frame, attached to errors (defaults to ``body``).

    Returns
    -------
    ndarray, shape (n_samples, channels), int64
        The reference sample followed by every reconstructed sample.

    Raises
    ------
    TruncatedFrameError
        If the reference sample, a block header or a block's deltas are cut off.
    InvalidFieldError
        If a block announces a delta width above 32 bits.
    """
    whole = bytes(frame if frame is not None else body)
    ref_size = channels * ((resolution + 7) // 8)
    if len(body) < ref_size:
        raise TruncatedFrameError("delta frame reference sample", whole, ref_size, len(body))
    rows: list[npt.NDArray[np.int64]] = [np.array([_reference(body, channels, resolution)])]
    last = rows[0][0]
    offset = ref_size
    while offset < len(body):
        if offset + 2 > len(body):
            raise TruncatedFrameError("delta block header", whole, offset + 2, len(body))
        width, count = body[offset], body[offset + 1]
        offset += 2
        if width > MAX_DELTA_WIDTH:
            raise InvalidFieldError(f"delta width {width} bits exceeds {MAX_DELTA_WIDTH}", whole)
        n_bits = width * count * channels
        n_bytes = (n_bits + 7) // 8
        if offset + n_bytes > len(body):
            raise TruncatedFrameError(
                f"delta block of {count} samples x {width} bits", whole, offset + n_bytes, len(body)
            )
        if count == 0:
            offset += n_bytes
            continue
        if width == 0:
            deltas = np.zeros((count, channels), dtype=np.int64)
        else:
            packed = np.frombuffer(body, dtype=np.uint8, count=n_bytes, offset=offset)
            bits = np.unpackbits(packed, bitorder="little")[:n_bits].reshape(-1, width)
            weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
            raw = bits.astype(np.int64) @ weights
            raw -= (raw >> (width - 1) & 1) << width  # two's complement of `width` bits
            deltas = raw.reshape(count, channels)
        offset += n_bytes
        block = last + np.cumsum(deltas, axis=0)
        rows.append(block)
        last = block[-1]
    return np.concatenate(rows, axis=0)
