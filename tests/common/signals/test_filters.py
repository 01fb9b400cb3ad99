"""Causal ECG filtering: physical properties and stream == batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.filters import CausalSosFilter, EcgFilter, FilterSpec, ecg_clean
from tests.common.signals.synthetic import synthetic_ecg


def band_power(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / fs)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_bandpass_removes_wander_and_keeps_qrs_band() -> None:
    # Prepare: 60 s at 360 Hz with strong baseline wander and a DC offset
    x, _ = synthetic_ecg(360.0, 60.0, seed=1, wander_uv=800.0, offset_uv=-2000.0)
    # Execute
    y = ecg_clean(x, 360.0)
    # Assert: < 0.3 Hz energy mostly gone, 5-25 Hz QRS energy kept
    settled = slice(int(10 * 360), None)
    assert band_power(y[settled], 360, 0, 0.3) < 0.05 * band_power(x[settled], 360, 0, 0.3)
    ratio = band_power(y[settled], 360, 5, 25) / band_power(x[settled], 360, 5, 25)
    assert 0.8 < ratio < 1.2


def test_dc_offset_does_not_ring_at_start() -> None:
    # Prepare: a constant -2 mV (µV units) signal
    x = np.full(2000, -2000.0)
    # Execute
    y = ecg_clean(x, 360.0)
    # Assert: steady-state initialisation, no start-up transient
    assert np.max(np.abs(y)) < 1e-6


def test_notch_removes_powerline() -> None:
    # Prepare: 50 Hz hum of 200 µV
    x, _ = synthetic_ecg(500.0, 20.0, seed=2, powerline_uv=200.0, powerline_hz=50.0)
    spec = FilterSpec(method="highpass", lowcut_hz=0.5, powerline_hz=50.0)
    # Execute
    y = ecg_clean(x, 500.0, spec)
    # Assert
    assert band_power(y[2000:], 500, 49, 51) < 0.02 * band_power(x[2000:], 500, 49, 51)


@pytest.mark.parametrize("fs", [128.0, 130.0, 250.0, 360.0, 500.0])
def test_chunked_equals_whole(fs: float) -> None:
    # Prepare
    x, _ = synthetic_ecg(fs, 30.0, seed=3)
    rng = np.random.default_rng(4)
    cuts = np.sort(rng.choice(np.arange(1, x.size), size=40, replace=False))
    spec = FilterSpec(powerline_hz=50.0)
    # Execute
    f = EcgFilter(fs, spec)
    chunked = np.concatenate([f.process(c) for c in np.split(x, cuts)])
    # Assert
    np.testing.assert_allclose(chunked, ecg_clean(x, fs, spec), rtol=1e-9, atol=1e-9)


def test_spec_validation_and_round_trip() -> None:
    # Prepare
    spec = FilterSpec(method="bandpass", lowcut_hz=1.0, highcut_hz=30.0, order=3, powerline_hz=60.0)
    # Execute / Assert
    assert FilterSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="Nyquist"):
        EcgFilter(50.0, FilterSpec(highcut_hz=40.0))
    with pytest.raises(ValueError, match="lowcut"):
        FilterSpec(lowcut_hz=50.0, highcut_hz=40.0)
    with pytest.raises(ValueError, match="unknown"):
        FilterSpec.from_dict({"cutoff": 3})


def test_none_method_passes_through() -> None:
    # Prepare
    x = np.arange(10.0)
    # Execute / Assert
    np.testing.assert_array_equal(ecg_clean(x, 360.0, FilterSpec(method="none")), x)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=300),
    st.lists(st.integers(0, 300), max_size=6),
)
def test_any_finite_signal_any_split_is_identical(values: list[float], cuts: list[int]) -> None:
    # Prepare
    x = np.array(values, dtype=np.float64)
    sos = FilterSpec(powerline_hz=50.0).design(360.0)
    pieces = np.split(x, sorted(c for c in cuts if c <= x.size))
    # Execute
    f = CausalSosFilter(sos)
    chunked = np.concatenate([f.process(p) for p in pieces]) if pieces else x
    whole = CausalSosFilter(sos).process(x)
    # Assert
    assert np.all(np.isfinite(whole))
    np.testing.assert_allclose(
        chunked, whole, rtol=0, atol=1e-9 * max(1.0, np.abs(x).max(initial=0))
    )


def test_streamed_filter_matches_scipy_sosfilt() -> None:
    # Prepare
    from scipy import signal as sps

    x, _ = synthetic_ecg(250.0, 20.0, seed=30, offset_uv=500.0)
    sos = FilterSpec().design(250.0)
    # Execute
    f = EcgFilter(250.0)
    streamed = np.concatenate([f.process(c) for c in np.array_split(x, 13)])
    want, _ = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])
    # Assert
    np.testing.assert_allclose(streamed, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())
