"""The numpy Butterworth design, steady state and group delay against scipy.signal."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import signal as sps

from common.signals.iir import butter_sos, sos_group_delay, sosfilt_zi
from common.signals.peaks import _running_max

RATES = [100.0, 128.0, 130.0, 250.0, 256.0, 360.0, 500.0, 1000.0]
DESIGNS = [
    ("lowpass", 40.0),
    ("lowpass", 50.0),
    ("highpass", 0.5),
    ("bandpass", (0.5, 40.0)),
    ("bandpass", (5.0, 15.0)),
    ("bandpass", (8.0, 20.0)),
]


@pytest.mark.parametrize(
    ("fs", "btype", "cutoff"),
    [(fs, b, c) for fs in RATES for b, c in DESIGNS if np.max(c) < fs / 2],
)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 6, 8])
def test_design_zi_and_delay_match_scipy(
    fs: float, order: int, btype: str, cutoff: float | tuple[float, float]
) -> None:
    # Prepare
    want = sps.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    # Execute
    got = butter_sos(order, cutoff, btype, fs)
    # Assert
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(sosfilt_zi(got), sps.sosfilt_zi(want), rtol=1e-9, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about unrelated near-singular frequencies
        delay = sps.group_delay(sps.sos2tf(want), w=[10.0], fs=fs)[1][0]
    assert sos_group_delay(got, 10.0, fs) == pytest.approx(delay, rel=1e-9)


def test_bad_design_raises() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        butter_sos(2, 10.0, "bandstop", 100.0)
    with pytest.raises(ValueError, match="unsupported"):
        butter_sos(2, 10.0, "bandpass", 100.0)


@pytest.mark.parametrize("n", [1, 2, 5, 40, 301])
@pytest.mark.parametrize("half", [1, 2, 3, 7, 18, 50])
def test_running_max_matches_ndimage(n: int, half: int) -> None:
    from scipy.ndimage import maximum_filter1d

    x = np.random.default_rng(n * 100 + half).normal(size=n)
    want = maximum_filter1d(x, 2 * half + 1, mode="nearest")
    np.testing.assert_array_equal(_running_max(x, half), want)


def test_edge_path_does_not_import_scipy() -> None:
    # The H10 deployment path must stay off scipy.signal / scipy.ndimage (resident memory).
    code = (
        "import sys, medchain.cli, edge_agent.app, edge_agent.live;"
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
