"""R-peak alignment to the largest deflection from the baseline."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.align import align_context_samples, align_r_peaks
from tests.common.signals.synthetic import synthetic_ecg


def test_snaps_to_the_r_wave_of_a_synthetic_ecg() -> None:
    # Prepare: positions off by up to ±40 ms
    x, r = synthetic_ecg(360.0, 20.0, seed=20, noise_uv=10.0)
    shifted = r + np.random.default_rng(21).integers(-14, 15, r.size)
    # Execute
    aligned = align_r_peaks(x, 360.0, shifted, 0.05)
    # Assert
    assert np.max(np.abs(aligned - r)) <= 1


def test_negative_complex_wins_when_larger() -> None:
    # Prepare
    x = np.full(2000, 100.0)
    x[1000] = 400.0  # +300 from baseline
    x[1010] = -500.0  # -600 from baseline
    # Execute / Assert
    assert align_r_peaks(x, 360.0, [1003], 0.05).tolist() == [1010]
    assert align_r_peaks(x, 360.0, [1003], 0.0).tolist() == [1003]
    assert align_context_samples(360.0, 0.05) == (90, 19)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=1, max_size=500),
    st.lists(st.integers(-100, 600), max_size=6),
)
def test_any_input_gives_indices_inside_the_signal(values: list[float], peaks: list[int]) -> None:
    # Execute
    out = align_r_peaks(np.array(values), 250.0, np.array(peaks, dtype=np.int64), 0.05)
    # Assert
    assert out.shape == (len(peaks),)
    assert np.all((out >= 0) & (out < len(values)))
