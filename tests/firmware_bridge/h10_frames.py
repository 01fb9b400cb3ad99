"""Polar H10 ECG notifications built from simulated ECG (never from the shared captures).

The layout is the PMD data frame the H10 sends (measurement 0 = ECG, u64 LE timestamp of the
last sample in ns since 2000-01-01, frame type 0, then 73 int24 LE samples in µV at 130 Hz),
the same as the SDK vectors in ``vectors/sdk.py`` and the real captures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from firmware_bridge.capture import H10_BIN_MAGIC
from medchain.synthetic_ecg import simulate_ecg

H10_FS = 130.0
PER_FRAME = 73
T0_PMD_NS = 24 * 365 * 86_400 * 10**9  # ~2024 on the sensor's 2000-based clock
TIMESTAMP = slice(1, 9)  # bytes of the timestamp in a frame


def ecg_frame(samples_uv: Sequence[int], last_ts_ns: int) -> bytes:
    """One ECG notification: ``samples_uv`` as int24, the last one at ``last_ts_ns``."""
    body = b"".join(int(v).to_bytes(3, "little", signed=True) for v in samples_uv)
    return b"\x00" + last_ts_ns.to_bytes(8, "little") + b"\x00" + body


def ecg_frames(seconds: float, seed: int = 0) -> list[bytes]:
    """Simulated ECG (µV, 130 Hz) as consecutive H10 notifications."""
    sig = simulate_ecg(seconds, fs=H10_FS, seed=seed).signal
    sig = np.clip(np.round(sig), -(2**23), 2**23 - 1).astype(np.int64)
    frames = []
    for first in range(0, sig.size - PER_FRAME + 1, PER_FRAME):
        last = first + PER_FRAME - 1
        ts = T0_PMD_NS + round(last * 1e9 / H10_FS)
        frames.append(ecg_frame(sig[first : first + PER_FRAME].tolist(), ts))
    return frames


def write_bin(path: Path, frames: Sequence[bytes]) -> Path:
    """An H10 ``.bin`` capture holding ``frames``."""
    path.write_bytes(H10_BIN_MAGIC + b"".join(len(f).to_bytes(4, "little") + f for f in frames))
    return path
