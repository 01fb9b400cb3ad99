"""Rhythm features: synthetic AF vs sinus separation, QRST cancellation and DAF, fuzzing."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from common.signals import rhythm
from common.signals.peaks import ecg_findpeaks
from common.signals.rhythm import (
    RHYTHM_FEATURES,
    RR_IRREGULARITY_FEATURES,
    atrial_spectrum_features,
    qrst_cancel,
    rhythm_window_features,
    rr_irregularity,
    sample_entropy,
)
from tests.common.signals.synthetic import synthetic_ecg

FS = 128.0
F = {name: i for i, name in enumerate(RR_IRREGULARITY_FEATURES)}


def _features(jitter: float, seed: int) -> np.ndarray:
    """Features of 30 s synthetic ECG, R peaks found by the edge's detector."""
    x, _ = synthetic_ecg(FS, 30.0, hr_bpm=80.0, seed=seed, rr_jitter=jitter, wander_uv=50.0)
    return rr_irregularity(ecg_findpeaks(x, FS), FS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_af_like_rr_is_more_irregular_than_sinus(seed: int) -> None:
    # Prepare / Execute: sinus (3 % RR jitter) vs AF-like (irregularly irregular, 22 %)
    sinus = _features(0.03, seed)
    af = _features(0.22, seed + 10)
    # Assert
    assert sinus[F["hr_bpm"]] == pytest.approx(80.0, rel=0.05)
    for name in ("rr_cv", "rmssd_norm", "pnn50", "madsd_norm", "rr_range_norm"):
        assert af[F[name]] > 2.5 * sinus[F[name]] or sinus[F[name]] == 0.0, name
    assert af[F["rr_cv"]] > 0.12 > sinus[F["rr_cv"]]
    assert af[F["cosen"]] > sinus[F["cosen"]] + 0.4
    assert sinus[F["valid_fraction"]] == 1.0


def test_random_series_turning_points_and_entropy() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    rr = 0.8 + 0.15 * rng.standard_normal(400)
    peaks = np.cumsum(np.r_[0, rr] * FS).astype(np.int64)
    # Execute
    f = rr_irregularity(peaks, FS)
    # Assert: a random series has ~2/3 turning points and SampEn near ln(1 / P(match))
    assert f[F["turning_point_ratio"]] == pytest.approx(2 / 3, abs=0.06)
    assert sample_entropy(rr) > 1.5
    assert sample_entropy(np.tile([0.8, 0.9, 1.0], 30)) == pytest.approx(0.0, abs=1e-9)


def test_too_few_beats_gives_zeros_not_errors() -> None:
    assert np.all(rr_irregularity([10, 200], FS)[:-1] == 0)
    assert np.all(rr_irregularity([], FS) == 0)
    with pytest.raises(ValueError, match="sampling_rate"):
        rr_irregularity([1, 2, 3], 0.0)


@pytest.mark.parametrize("f_atrial", [4.5, 6.5])
def test_qrst_cancellation_reveals_the_atrial_frequency(f_atrial: float) -> None:
    # Prepare: regular QRST complexes (1.2 mV R) over 40 µV fibrillatory waves
    x, peaks = synthetic_ecg(
        FS, 60.0, hr_bpm=90.0, seed=3, rr_jitter=0.15, wander_uv=0.0, noise_uv=5.0
    )
    t = np.arange(x.size) / FS
    x = x + 40.0 * np.sin(2 * np.pi * f_atrial * t)
    # Execute
    residual = qrst_cancel(x, FS, peaks)
    raw_daf = atrial_spectrum_features(x, FS)[0]
    daf, conc, _ = atrial_spectrum_features(residual, FS)
    # Assert: the residual's dominant 3-12 Hz peak is the atrial wave
    assert daf == pytest.approx(f_atrial, abs=0.15)
    assert conc > 0.4
    assert np.std(residual) < 0.3 * np.std(x)
    assert raw_daf != pytest.approx(f_atrial, abs=0.15) or conc > 0.4


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    arrays(np.float64, st.integers(0, 1500), elements=st.floats(-1e6, 1e6)),
    st.lists(st.integers(-100, 2000), max_size=60),
)
def test_any_finite_input_never_crashes(x: np.ndarray, peaks: list[int]) -> None:
    # Execute
    p = np.sort(np.asarray(peaks, dtype=np.int64))
    f = rr_irregularity(p, FS)
    res = qrst_cancel(x, FS, p)
    a = atrial_spectrum_features(res, FS)
    # Assert
    assert f.shape == (len(RR_IRREGULARITY_FEATURES),) and np.all(np.isfinite(f))
    assert res.shape == x.shape and np.all(np.isfinite(a))


def test_docstring_examples() -> None:
    result = doctest.testmod(rhythm)
    assert result.failed == 0 and result.attempted > 0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    arrays(np.float64, st.integers(0, 4000), elements=st.floats(-1e5, 1e5)),
    st.sampled_from([100.0, 128.0, 130.0, 250.0, 360.0, 500.0]),
    st.lists(st.integers(-50, 5000), max_size=80, unique=True),
)
def test_rhythm_window_features_never_crash_at_any_rate(
    x: np.ndarray, fs: float, peaks: list[int]
) -> None:
    # Execute
    f = rhythm_window_features(x, fs, np.sort(np.asarray(peaks, dtype=np.int64)))
    # Assert
    assert f.shape == (len(RHYTHM_FEATURES),) and np.all(np.isfinite(f))
