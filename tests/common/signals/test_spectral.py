"""The numpy sosfiltfilt and Welch spectrum against scipy.signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from common.signals.iir import butter_sos
from common.signals.spectral import sosfiltfilt, welch


@pytest.mark.parametrize("fs", [100.0, 128.0, 130.0, 360.0])
@pytest.mark.parametrize("n", [16, 100, 1000, 3840])
def test_sosfiltfilt_matches_scipy(fs: float, n: int) -> None:
    # Prepare
    sos = butter_sos(2, (0.5, min(40.0, 0.45 * fs)), "bandpass", fs)
    x = np.random.default_rng(n).normal(size=n) * 50 + 200
    want = sps.sosfiltfilt(sos, x)
    # Execute / Assert
    np.testing.assert_allclose(sosfiltfilt(sos, x), want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


def test_sosfiltfilt_too_short_raises() -> None:
    sos = butter_sos(2, (0.5, 40.0), "bandpass", 128.0)
    with pytest.raises(ValueError, match="padlen"):
        sosfiltfilt(sos, np.ones(15))


@pytest.mark.parametrize(
    ("n", "nper", "nfft"), [(512, 512, 4096), (3840, 512, 4096), (1001, 200, 4096), (777, 256, 777)]
)
def test_welch_matches_scipy(n: int, nper: int, nfft: int) -> None:
    # Prepare
    x = np.random.default_rng(n).normal(size=n) + 3.0
    f0, p0 = sps.welch(x, fs=128.0, nperseg=nper, nfft=nfft)
    # Execute
    f1, p1 = welch(x, 128.0, nper, nfft)
    # Assert
    np.testing.assert_allclose(f1, f0, rtol=1e-12)
    np.testing.assert_allclose(p1, p0, rtol=1e-9, atol=1e-15 * p0.max())
