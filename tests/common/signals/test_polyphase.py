"""The numpy Kaiser FIR and polyphase resampler against scipy.signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from common.signals.polyphase import kaiser_lowpass, resample_poly

RATIOS = [(36, 13), (18, 65), (16, 45), (2, 1), (1, 3), (5, 4), (72, 25), (180, 128), (4, 2)]


@pytest.mark.parametrize(("up", "down"), RATIOS)
def test_fir_matches_firwin(up: int, down: int) -> None:
    m = max(up, down)
    want = sps.firwin(20 * m + 1, 1.0 / m, window=("kaiser", 5.0))
    np.testing.assert_allclose(
        kaiser_lowpass(20 * m + 1, 1.0 / m, 5.0), want, rtol=1e-9, atol=1e-15
    )


@pytest.mark.parametrize(("up", "down"), RATIOS)
@pytest.mark.parametrize("n", [1, 2, 7, 50, 131, 400])
@pytest.mark.parametrize(("shape", "axis"), [((), -1), ((4,), 1), ((3,), 0)])
def test_resample_matches_resample_poly(
    up: int, down: int, n: int, shape: tuple[int, ...], axis: int
) -> None:
    # Prepare
    full = (n,) if not shape else ((shape[0], n) if axis == 1 else (n, shape[0]))
    x = np.random.default_rng(n + up).normal(size=full)
    fir = sps.firwin(20 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0))
    want = sps.resample_poly(x, up, down, axis=axis, window=fir)
    # Execute
    got = resample_poly(x, up, down, fir, axis=axis)
    # Assert
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
