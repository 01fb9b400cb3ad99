"""PPG heart-rate tracker: synthetic signals with motion, streaming = batch, real SPC 2015 check."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from common.signals import ppg
from common.signals.ppg import PpgHeartRateTracker, PpgTrackerSettings, ppg_clean, ppg_rate
from common.signals.resample import resampling_ratio

FS = 125.0


def synthetic_ppg_with_motion(
    seconds: float, hr_hz: np.ndarray | float, motion_hz: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """PPG (n, 2): heart sinusoid + 2nd harmonic + stronger motion artefact; ACC (n, 3) in mg."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f_hr = np.broadcast_to(np.asarray(hr_hz, dtype=float), t.shape)
    phase = 2 * np.pi * np.cumsum(f_hr) / FS
    heart = np.sin(phase) + 0.4 * np.sin(2 * phase + 0.5)
    motion = np.sin(2 * np.pi * motion_hz * t) + 0.5 * np.sin(4 * np.pi * motion_hz * t + 1.0)
    ppg_ch = np.stack([heart + 3.0 * motion, heart + 2.5 * np.roll(motion, 3)], axis=1)
    ppg_ch += 0.2 * rng.normal(size=ppg_ch.shape)
    acc = np.stack([400 * motion, 250 * np.roll(motion, 2), 1000 + 100 * motion], axis=1)
    acc += 5 * rng.normal(size=acc.shape)
    return ppg_ch, acc


def test_tracker_follows_heart_not_motion() -> None:
    # Prepare: heart 1.5 -> 2.3 Hz (90 -> 138 bpm), arm swing fixed at 1.3 Hz (78 spm) and 3x louder
    seconds = 120
    t = np.arange(int(seconds * FS)) / FS
    hr_hz = 1.5 + 0.8 * t / seconds
    x, acc = synthetic_ppg_with_motion(seconds, hr_hz, motion_hz=1.3, seed=1)
    # Execute
    est = ppg_rate(x, acc, FS)
    # Assert: compare with the true mean HR of each 8 s window
    centres = 4.0 + 2.0 * np.arange(est.size)
    truth = 60 * (1.5 + 0.8 * centres / seconds)
    assert est.size == (seconds - 8) // 2 + 1
    assert np.mean(np.abs(est - truth)) < 3.0
    assert np.all(np.abs(est - 78.0) > 5.0)  # never locked on the motion frequency


def test_without_accelerometer_motion_is_the_louder_peak() -> None:
    # Prepare: the same signal but no ACC reference -> cancellation cannot work
    x, acc = synthetic_ppg_with_motion(60, 2.0, motion_hz=1.3, seed=2)
    # Execute
    with_acc = ppg_rate(x, acc, FS)
    without = ppg_rate(x, np.zeros_like(acc), FS)
    # Assert: the accelerometer is what makes it right (120 bpm heart, 78 spm motion)
    assert np.mean(np.abs(with_acc - 120.0)) < 2.0
    assert np.mean(np.abs(without - 120.0)) > 10.0


def test_streaming_push_equals_batch_in_any_chunking() -> None:
    # Prepare
    x, acc = synthetic_ppg_with_motion(40, 1.8, motion_hz=2.4, seed=3)
    batch = ppg_rate(x, acc, FS)
    tracker = PpgHeartRateTracker(FS)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, x.shape[0]), size=25, replace=False))
    # Execute
    streamed = [
        e.bpm
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, x.shape[0]], strict=True)
        for e in tracker.push(x[a:b], acc[a:b])
    ]
    # Assert
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-9)
    assert tracker.last_bpm == pytest.approx(batch[-1])


def test_estimate_fields_and_reset() -> None:
    # Prepare
    x, acc = synthetic_ppg_with_motion(8, 1.2, motion_hz=2.0, seed=4)
    tracker = PpgHeartRateTracker(FS)
    # Execute
    est = tracker.update_window(x, acc)
    tracker.reset()
    # Assert
    assert est.bpm == pytest.approx(72.0, abs=2.0)
    assert 0.0 < est.confidence <= 1.0
    assert est.motion > 0
    assert tracker.last_bpm is None


def test_ppg_clean_removes_out_of_band_energy() -> None:
    # Prepare: 1.5 Hz pulse + 0.05 Hz drift + 20 Hz interference
    t = np.arange(0, 20, 1 / FS)
    x = np.sin(2 * np.pi * 1.5 * t) + 5 * np.sin(2 * np.pi * 0.05 * t) + np.sin(2 * np.pi * 20 * t)
    # Execute
    y = ppg_clean(x, FS)
    # Assert: what is left is the pulse
    core = slice(int(2 * FS), int(18 * FS))
    assert np.std(y[core] - np.sin(2 * np.pi * 1.5 * t[core])) < 0.1


@pytest.mark.parametrize("fs", [125.0, 64.0, 51.2])
def test_numpy_filtering_and_resampling_equal_scipy(fs: float) -> None:
    # Prepare: the edge runs ppg without scipy; its numpy pieces must give SciPy's numbers
    from scipy import signal as sps

    x = np.random.default_rng(0).normal(size=(int(8 * fs), 5)).cumsum(axis=0)
    sos = sps.butter(4, [0.4, 4.0], btype="bandpass", fs=fs, output="sos")
    # Execute
    clean = ppg_clean(x, fs)
    work = ppg._to_work_rate(x, fs)
    # Assert
    ref = sps.sosfiltfilt(sos, x, axis=0)
    np.testing.assert_allclose(clean, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    up, down = resampling_ratio(fs, ppg.WORK_RATE_HZ)
    np.testing.assert_allclose(work, sps.resample_poly(ref, up, down, axis=0), atol=1e-9)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="sampling_rate"):
        PpgHeartRateTracker(5.0)
    with pytest.raises(ValueError, match="samples"):
        PpgHeartRateTracker(FS).push(np.zeros(100), np.zeros((99, 3)))
    with pytest.raises(ValueError, match="window"):
        PpgTrackerSettings(window_s=1.0)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    arrays(
        np.float64, st.tuples(st.integers(250, 1100), st.just(2)), elements=st.floats(-1e6, 1e6)
    ),
    st.sampled_from([0.0, 1.0, np.nan, np.inf]),
)
def test_any_finite_or_corrupt_input_never_crashes(x: np.ndarray, spike: float) -> None:
    # Prepare
    x = x.copy()
    x[0, 0] = spike
    acc = np.tile(x[:, :1], (1, 3))
    # Execute
    est = PpgHeartRateTracker(FS).push(x, acc)
    # Assert
    assert all(40.0 <= e.bpm <= 200.0 and np.isfinite(e.confidence) for e in est)


def test_docstring_examples() -> None:
    assert doctest.testmod(ppg).failed == 0


@pytest.mark.datasets("spc2015_wrist_ppg_acc")
def test_real_spc2015_recording_below_troika(data_root: Path) -> None:
    # Prepare: one training recording with its ECG reference (window k covers [2k, 2k+8) s)
    folder = data_root / "spc2015_wrist_ppg_acc" / "training"
    sig = sio.loadmat(folder / "DATA_05_TYPE02.mat")["sig"]
    ref = sio.loadmat(folder / "DATA_05_TYPE02_BPMtrace.mat")["BPM0"].ravel()
    # Execute
    est = ppg_rate(sig[1:3].T, sig[3:6].T, FS)
    # Assert
    assert est.size == ref.size
    assert np.mean(np.abs(est - ref)) < 2.34
