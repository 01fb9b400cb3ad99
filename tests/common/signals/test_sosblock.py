"""The block state-space sosfilt against scipy.signal.sosfilt, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from common.signals.sosblock import BLOCK, SosKernel

FILTERS = [
    (130.0, 2, (0.5, 40.0), "bandpass"),
    (360.0, 2, (5.0, 15.0), "bandpass"),
    (1000.0, 4, 0.5, "highpass"),
    (250.0, 4, 50.0, "lowpass"),
    (128.0, 3, 40.0, "lowpass"),
    (500.0, 8, (0.5, 100.0), "bandpass"),
]


@pytest.mark.parametrize(("fs", "order", "cutoff", "btype"), FILTERS)
@pytest.mark.parametrize("sizes", [[1], [BLOCK], [BLOCK + 1, 3], [7, 300, 1, 2 * BLOCK], [5000]])
def test_chunks_match_scipy(
    fs: float, order: int, cutoff: float | tuple[float, float], btype: str, sizes: list[int]
) -> None:
    # Prepare
    sos = sps.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    x = np.random.default_rng(sum(sizes)).normal(size=sum(sizes)) * 300 + 1000
    zi = sps.sosfilt_zi(sos) * x[0]
    want, want_zf = sps.sosfilt(sos, x, zi=zi)
    kernel = SosKernel(sos)
    # Execute
    parts, z = [], zi
    for chunk in np.split(x, np.cumsum(sizes)[:-1]):
        y, z = kernel.run(chunk, z)
        parts.append(y)
    # Assert
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.concatenate(parts), want, rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_allclose(z, want_zf, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("n", [1, 50, BLOCK, 3 * BLOCK + 5])
def test_multichannel_axis0_matches_scipy(n: int) -> None:
    # Prepare
    sos = sps.butter(4, 50.0, fs=1000.0, output="sos")
    x = np.random.default_rng(n).normal(size=(n, 3))
    zi = np.repeat(sps.sosfilt_zi(sos)[:, :, None], 3, axis=2) * x[0][None, None, :]
    want, want_zf = sps.sosfilt(sos, x, axis=0, zi=zi)
    # Execute
    got, zf = SosKernel(sos).run(x, zi)
    # Assert
    assert got.shape == x.shape and zf.shape == zi.shape
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(zf, want_zf, rtol=1e-7, atol=1e-9)
