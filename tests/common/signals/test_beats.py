"""Beat windows: alignment across rates, padding, normalisation, stream == batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.beats import BeatSpec, beat_windows, beats_in_bounds
from common.signals.filters import EcgFilter, FilterSpec, ecg_clean
from tests.common.signals.synthetic import synthetic_ecg


@pytest.mark.parametrize("fs", [128.0, 130.0, 250.0, 360.0, 500.0])
def test_r_peak_lands_on_the_spec_column_at_any_device_rate(fs: float) -> None:
    # Prepare: a clean synthetic ECG without noise or wander
    x, r = synthetic_ecg(fs, 20.0, seed=5, noise_uv=0.0, wander_uv=0.0)
    spec = BeatSpec(
        sampling_rate_hz=128.0, before_samples=32, after_samples=64, normalization="none"
    )
    ok = beats_in_bounds(r, x.size, fs, spec)
    # Execute
    w = beat_windows(x, fs, r[ok], spec)
    # Assert: the maximum of every window is the R peak, one model sample at most off
    assert w.shape == (ok.sum(), 96)
    assert np.all(np.abs(np.argmax(w, axis=1) - 32) <= 1)
    # amplitude preserved by the resampler (R wave of 1200 µV)
    assert np.all(np.abs(w.max(axis=1) - 1200.0) < 150.0)


def test_windows_match_between_device_rates() -> None:
    # Prepare: the same synthetic heart at 360 Hz and 500 Hz
    spec = BeatSpec(
        sampling_rate_hz=128.0, before_samples=40, after_samples=60, normalization="zscore"
    )
    x360, r360 = synthetic_ecg(360.0, 20.0, seed=6, noise_uv=0.0, wander_uv=0.0)
    x500, r500 = synthetic_ecg(500.0, 20.0, seed=6, noise_uv=0.0, wander_uv=0.0)
    # Execute
    w360 = beat_windows(x360, 360.0, r360[2:-2], spec)
    w500 = beat_windows(x500, 500.0, r500[2:-2], spec)
    # Assert: same beats at the model rate (R-peak rounding to the device grid differs slightly)
    assert np.median(np.abs(w360 - w500)) < 0.05


def test_edge_beats_are_flagged_and_padded() -> None:
    # Prepare
    spec = BeatSpec(sampling_rate_hz=128.0, before_samples=32, after_samples=64)
    x = np.random.default_rng(7).normal(size=3600)
    r = np.array([5, 1800, 3595])
    # Execute
    w = beat_windows(x, 360.0, r, spec)
    ok = beats_in_bounds(r, x.size, 360.0, spec)
    # Assert
    assert ok.tolist() == [False, True, False]
    assert np.all(np.isfinite(w)) and w.shape == (3, 96)


def test_normalisations() -> None:
    # Prepare
    x, r = synthetic_ecg(360.0, 10.0, seed=8)
    base = {"sampling_rate_hz": 360.0, "before_samples": 90, "after_samples": 110}
    # Execute
    z = beat_windows(x, 360.0, r[1:-1], BeatSpec(**base, normalization="zscore"))
    rob = beat_windows(x, 360.0, r[1:-1], BeatSpec(**base, normalization="robust"))
    mv = beat_windows(x, 360.0, r[1:-1], BeatSpec(**base, normalization="mv"))
    flat = beat_windows(np.zeros(1000), 360.0, [500], BeatSpec(**base))
    # Assert
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-9)
    np.testing.assert_allclose(np.median(rob, axis=1), 0, atol=1e-9)
    assert 0.8 < np.median(mv.max(axis=1)) < 1.6  # R wave ~1.2 mV above the baseline
    assert np.all(flat == 0.0)


@pytest.mark.parametrize("fs", [130.0, 360.0])
def test_streaming_windows_equal_batch_windows(fs: float) -> None:
    # Prepare: the edge filters chunk by chunk and keeps only the context of each beat
    spec = BeatSpec(sampling_rate_hz=128.0, before_samples=32, after_samples=64)
    x, r = synthetic_ecg(fs, 60.0, seed=9)
    before, after = spec.context_samples(fs)
    batch = beat_windows(ecg_clean(x, fs, spec.filter), fs, r, spec)
    ok = beats_in_bounds(r, x.size, fs, spec)
    # Execute
    f = EcgFilter(fs, spec.filter)
    cleaned = np.zeros(0)
    streamed = []
    for chunk in np.array_split(x, 37):
        cleaned = np.concatenate([cleaned, f.process(chunk)])
        for peak in r[ok]:
            if peak + after <= cleaned.size and peak + after > cleaned.size - chunk.size:
                ctx = cleaned[peak - before : peak + after]
                streamed.append(beat_windows(ctx, fs, [before], spec)[0])
    # Assert: equal up to rounding (the block filter kernel rounds differently per chunking)
    np.testing.assert_allclose(np.array(streamed), batch[ok], rtol=1e-9, atol=1e-12)


def test_spec_round_trips_through_json() -> None:
    # Prepare
    spec = BeatSpec(
        sampling_rate_hz=128.0,
        before_samples=30,
        after_samples=70,
        filter=FilterSpec(lowcut_hz=0.7, highcut_hz=35.0, powerline_hz=50.0),
        normalization="robust",
        rr_features=("rr_pre", "rr_local"),
    )
    # Execute
    back = BeatSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    # Assert
    assert back == spec
    assert spec.to_dict()["rr_units"] == {"rr_pre": "s", "rr_local": "s"}


def test_spec_rejects_bad_values() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="normalization"):
        BeatSpec(normalization="minmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RR features"):
        BeatSpec(rr_features=("qt",))
    with pytest.raises(ValueError, match="window_len"):
        BeatSpec.from_dict({**BeatSpec().to_dict(), "window_len": 3})
    with pytest.raises(ValueError, match="version"):
        BeatSpec.from_dict({**BeatSpec().to_dict(), "version": 99})


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=1, max_size=400),
    st.lists(st.integers(-50, 450), max_size=8),
    st.sampled_from([128.0, 130.0, 360.0]),
)
def test_any_signal_any_peaks_gives_finite_windows(values, peaks, fs) -> None:
    # Prepare
    spec = BeatSpec(sampling_rate_hz=128.0, before_samples=20, after_samples=30)
    # Execute
    w = beat_windows(np.array(values), fs, np.array(peaks, dtype=np.int64), spec)
    # Assert
    assert w.shape == (len(peaks), 50)
    assert np.all(np.isfinite(w))


def test_alignment_makes_windows_independent_of_the_starting_position() -> None:
    # Prepare: a biphasic complex (small positive, large negative wave 30 ms later)
    fs = 360.0
    x = np.random.default_rng(10).normal(0, 5, 3600)
    for r in (1000, 2000, 3000):
        x[r - 5 : r + 5] += 400 * np.hanning(10)
        x[r + 6 : r + 16] -= 900 * np.hanning(10)
    spec = BeatSpec(
        sampling_rate_hz=128.0, before_samples=32, after_samples=64, align_window_s=0.05
    )
    # Execute: "annotation" at the positive wave, "detection" at the negative one
    a = beat_windows(x, fs, [1000, 2000, 3000], spec)
    b = beat_windows(x, fs, [1011, 2011, 3011], spec)
    unaligned = beat_windows(
        x, fs, [1000, 2000], BeatSpec(sampling_rate_hz=128.0, align_window_s=0)
    )
    # Assert
    np.testing.assert_array_equal(a, b)
    assert unaligned.shape == (2, 200)
