"""Seeded synthetic ECG-like signals with known R-peak positions (test helper)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# (offset s, width s, amplitude µV) of the P, Q, R, S, T waves relative to the R peak.
_WAVES = (
    (-0.20, 0.025, 150.0),
    (-0.03, 0.010, -120.0),
    (0.00, 0.012, 1200.0),
    (0.03, 0.010, -250.0),
    (0.28, 0.050, 300.0),
)


def synthetic_ecg(
    fs: float,
    duration_s: float,
    hr_bpm: float = 72.0,
    *,
    seed: int = 0,
    rr_jitter: float = 0.03,
    noise_uv: float = 20.0,
    wander_uv: float = 300.0,
    powerline_uv: float = 0.0,
    powerline_hz: float = 50.0,
    amplitude_scale: float = 1.0,
    offset_uv: float = 0.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """ECG in µV at ``fs`` Hz and the sample index of every R peak.

    Beats follow a Gaussian-sum PQRST template at ``hr_bpm`` with relative RR jitter, plus white
    noise, a 0.2 Hz + 0.05 Hz baseline wander and an optional powerline tone.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    rr_mean = 60.0 / hr_bpm
    times = []
    tr = 0.5
    while tr < duration_s - 0.3:
        times.append(tr)
        tr += rr_mean * (1.0 + rr_jitter * rng.standard_normal())
    r_times = np.array(times)
    x = np.zeros(n)
    for offset, width, amp in _WAVES:
        for rt in r_times:
            centre = rt + offset
            lo = max(0, int((centre - 5 * width) * fs))
            hi = min(n, int((centre + 5 * width) * fs) + 1)
            x[lo:hi] += amp * np.exp(-0.5 * ((t[lo:hi] - centre) / width) ** 2)
    x *= amplitude_scale
    x += wander_uv * (np.sin(2 * np.pi * 0.2 * t) + 0.5 * np.sin(2 * np.pi * 0.05 * t + 1.0))
    x += noise_uv * rng.standard_normal(n)
    x += powerline_uv * np.sin(2 * np.pi * powerline_hz * t)
    x += offset_uv
    return x, np.round(r_times * fs).astype(np.int64)
