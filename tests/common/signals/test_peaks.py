"""Streaming QRS detector: physical properties on synthetic ECG, stream == batch, fuzzing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals.matching import match_peaks
from common.signals.peaks import QRSDetector, ecg_findpeaks
from common.signals.qrs_rules import QRSParams
from tests.common.signals.synthetic import synthetic_ecg


def tolerance(fs: float) -> int:
    return int(round(0.15 * fs))


@pytest.mark.parametrize("fs", [128.0, 130.0, 250.0, 360.0, 500.0])
@pytest.mark.parametrize("hr", [45.0, 75.0, 150.0])
def test_finds_every_beat_at_known_heart_rate(fs: float, hr: float) -> None:
    # Prepare: 60 s with noise and baseline wander
    x, r = synthetic_ecg(fs, 60.0, hr, seed=int(fs + hr), noise_uv=40.0, wander_uv=500.0)
    # Execute
    peaks = ecg_findpeaks(x, fs)
    # Assert: every beat found, nothing else, R peak within 10 ms
    m = match_peaks(peaks, r, tolerance(fs))
    assert (m.fp, m.fn) == (0, 0)
    errors = np.abs(peaks[m.matched_detected] - r[m.matched_reference]) / fs
    assert np.max(errors) <= 0.010
    assert len(peaks) == pytest.approx(60 * hr / 60, abs=2)


def test_inverted_qrs_is_found_at_its_negative_extremum() -> None:
    # Prepare
    x, r = synthetic_ecg(360.0, 30.0, seed=11)
    # Execute
    peaks = ecg_findpeaks(-x, 360.0)
    # Assert
    m = match_peaks(peaks, r, tolerance(360.0))
    assert (m.fp, m.fn) == (0, 0)
    assert np.max(np.abs(peaks[m.matched_detected] - r[m.matched_reference])) <= 4


def test_adapts_to_a_sudden_amplitude_drop_and_rise() -> None:
    # Prepare: amplitude x0.25 in the middle third, x3 in the last (gain switched in diastole)
    x, r = synthetic_ecg(250.0, 90.0, seed=12, noise_uv=10.0, wander_uv=0.0)
    a, b = (int(r[np.searchsorted(r, s) - 1] + 0.6 * 250) for s in (7500, 15000))
    x[a:b] *= 0.25
    x[b:] *= 3.0
    # Execute
    peaks = ecg_findpeaks(x, 250.0)
    # Assert: at most a beat or two lost while the thresholds adapt
    m = match_peaks(peaks, r, tolerance(250.0))
    assert m.fn <= 2 and m.fp == 0


def test_premature_beats_and_pauses_are_found() -> None:
    # Prepare: regular beats at 1 s, every 5th beat 0.45 s early, one 2.8 s pause
    fs = 360.0
    times = []
    t = 0.6
    for k in range(50):
        times.append(t - (0.45 if k % 5 == 4 else 0.0))
        t += 2.8 if k == 30 else 1.0
    template, _ = synthetic_ecg(fs, 1.2, seed=0, noise_uv=0.0, wander_uv=0.0, hr_bpm=30)
    qrs = template[int(0.5 * fs) - 90 : int(0.5 * fs) + 180]
    x = np.random.default_rng(13).normal(0, 15, int((t + 1) * fs))
    r = np.round(np.array(times) * fs).astype(np.int64)
    for peak in r:
        x[peak - 90 : peak + 180] += qrs
    # Execute
    peaks = ecg_findpeaks(x, fs)
    # Assert
    m = match_peaks(peaks, r, tolerance(fs))
    assert (m.fp, m.fn) == (0, 0)


@pytest.mark.parametrize("chunk_s", [0.013, 0.25, 1.0, 7.3])
def test_streaming_equals_batch_and_latency_is_bounded(chunk_s: float) -> None:
    # Prepare
    fs = 360.0
    x, _ = synthetic_ecg(fs, 40.0, 70.0, seed=14, noise_uv=60.0)
    batch = ecg_findpeaks(x, fs)
    step = max(1, int(chunk_s * fs))
    # Execute
    det = QRSDetector(fs)
    found: list[np.ndarray] = []
    delays: list[float] = []
    for start in range(0, x.size, step):
        out = det.process(x[start : start + step])
        end = min(start + step, x.size)
        delays.extend((end - out) / fs)
        found.append(out)
    found.append(det.flush())
    # Assert
    np.testing.assert_array_equal(np.concatenate(found), batch)
    after_learning = [d for d, p in zip(delays, batch, strict=False) if p / fs > 3.0]
    assert max(after_learning) < 0.5 + chunk_s


def test_non_finite_samples_do_not_poison_the_stream() -> None:
    # Prepare
    x, r = synthetic_ecg(360.0, 30.0, seed=15)
    x += 3000.0  # a DC offset: a dropped sample must not become a 3 mV step
    x[5000:5003] = [np.nan, np.inf, -np.inf]
    x[:2] = np.nan
    # Execute
    peaks = ecg_findpeaks(x, 360.0)
    # Assert
    m = match_peaks(peaks, r, tolerance(360.0))
    assert (m.fn, m.fp) == (0, 0)


def test_bad_configuration_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="band"):
        QRSDetector(20.0)
    with pytest.raises(ValueError, match="positive"):
        QRSDetector(0.0)
    with pytest.raises(ValueError, match="ratio"):
        QRSParams(threshold_ratio=1.5)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e4, 1e4), st.sampled_from([np.nan, np.inf, -np.inf])),
        min_size=0,
        max_size=1500,
    ),
    st.lists(st.integers(0, 1500), max_size=8),
    st.sampled_from([128.0, 360.0]),
)
def test_any_signal_any_chunking_same_peaks(
    values: list[float], cuts: list[int], fs: float
) -> None:
    # Prepare
    x = np.array(values, dtype=np.float64)
    pieces = np.split(x, sorted(c for c in cuts if c <= x.size))
    # Execute
    det = QRSDetector(fs)
    streamed = np.concatenate([det.process(p) for p in pieces] + [det.flush()])
    batch = ecg_findpeaks(x, fs)
    # Assert
    np.testing.assert_array_equal(streamed, batch)
    assert np.all(np.diff(batch) > 0)
    assert np.all((batch >= 0) & (batch < max(x.size, 1)))


def test_signal_chunk_column_is_accepted_and_multichannel_rejected() -> None:
    # Prepare
    x, _ = synthetic_ecg(250.0, 10.0, seed=16)
    # Execute
    column = QRSDetector(250.0).process(x[:, None])
    flat = QRSDetector(250.0).process(x)
    # Assert
    np.testing.assert_array_equal(column, flat)
    with pytest.raises(ValueError, match="one channel"):
        QRSDetector(250.0).process(np.zeros((10, 2)))


def test_memory_stays_bounded_on_a_long_stream_without_beats() -> None:
    # Prepare: 20 minutes of noise after 10 s of ECG, fed in 1 s chunks
    fs = 250.0
    ecg, _ = synthetic_ecg(fs, 10.0, seed=17)
    noise = np.random.default_rng(18).normal(0, 30, int(1200 * fs))
    x = np.concatenate([ecg, noise])
    det = QRSDetector(fs)
    # Execute
    for start in range(0, x.size, int(fs)):
        det.process(x[start : start + int(fs)])
    # Assert: buffers hold a few seconds, the rule state a few candidates
    assert det._ma.size < 10 * fs
    assert len(det._rules._since) < 50
