"""The rhythm v2 model input: any rate, either polarity, quality flags, windows."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.signals import rhythm_input
from common.signals.rhythm_input import (
    CLIP,
    FEATURE_NAMES,
    INPUT_FS_HZ,
    prepare_rhythm_input,
    quality_flags,
    window_starts,
)
from tests.common.signals.synthetic import synthetic_ecg


def test_doctests() -> None:
    assert doctest.testmod(rhythm_input).failed == 0


def test_an_inverted_recording_gives_the_same_input() -> None:
    # Prepare: a handheld ECG held the other way round is the same ECG times -1
    x, _ = synthetic_ecg(300.0, 30.0, hr_bpm=70.0, seed=1)
    # Execute
    up, down = prepare_rhythm_input(x, 300.0), prepare_rhythm_input(-x, 300.0)
    # Assert
    assert (up.polarity, down.polarity) == (1, -1)
    np.testing.assert_allclose(up.signal, down.signal, atol=1e-5)
    np.testing.assert_allclose(up.features, down.features, atol=1e-4)


def test_the_typical_qrs_is_one_and_the_signal_is_clipped() -> None:
    # Prepare: the synthetic R wave is 1200 µV high, with a 5 mV artefact
    x, peaks = synthetic_ecg(360.0, 20.0, seed=2, wander_uv=0.0)
    x[3000:3010] += 5000.0
    # Execute
    inp = prepare_rhythm_input(x, 360.0)
    # Assert
    r128 = np.round(peaks * INPUT_FS_HZ / 360.0).astype(int)
    at_r = np.array([inp.signal[max(r - 2, 0) : r + 3].max() for r in r128])
    assert np.median(at_r) == pytest.approx(1.0, abs=0.1)
    assert inp.signal.max() <= CLIP and inp.signal.dtype == np.float32
    assert 800 < inp.scale_uv < 1300 and inp.quality == ()


def test_the_same_ecg_at_two_rates_gives_the_same_input() -> None:
    # Prepare: one synthetic ECG sampled at 300 Hz (AliveCor) and at 360 Hz (MIT-BIH)
    a, _ = synthetic_ecg(300.0, 30.0, seed=4, rr_jitter=0.1)
    b, _ = synthetic_ecg(360.0, 30.0, seed=4, rr_jitter=0.1)
    # Execute
    ia, ib = prepare_rhythm_input(a, 300.0), prepare_rhythm_input(b, 360.0)
    # Assert: same length at 128 Hz, same RR statistics, close waveforms (noise differs)
    assert ia.signal.size == ib.signal.size == 30 * 128
    hr, cv = FEATURE_NAMES.index("hr_bpm"), FEATURE_NAMES.index("rr_cv")
    assert ia.features[hr] == pytest.approx(ib.features[hr], rel=0.02)
    assert ia.features[cv] == pytest.approx(ib.features[cv], abs=0.01)
    assert np.corrcoef(ia.signal, ib.signal)[0, 1] > 0.95


@pytest.mark.parametrize(
    ("make", "flag"),
    [
        (lambda x: x[: int(8.5 * 300)], "too_short"),
        (lambda x: np.full_like(x, 512.0), "flat"),
        (lambda x: np.clip(x, -300.0, 400.0), "clipped"),
        (lambda x: np.where(np.arange(x.size) % 97 == 0, np.nan, x), "non_finite"),
    ],
)
def test_bad_recordings_are_flagged(make: object, flag: str) -> None:
    # Prepare
    x, _ = synthetic_ecg(300.0, 20.0, seed=5)
    bad = make(x)  # type: ignore[operator]
    # Execute
    inp = prepare_rhythm_input(bad, 300.0)
    # Assert: the flag, a finite signal, and a clean recording has none
    assert flag in inp.quality and flag in quality_flags(bad, 300.0)
    assert np.all(np.isfinite(inp.signal)) and np.all(np.isfinite(inp.features))
    assert quality_flags(x, 300.0) == ()


def test_flat_line_is_not_decidable_and_noise_without_beats_is_flagged() -> None:
    # Prepare
    flat = np.zeros(3000)
    rng = np.random.default_rng(0)
    # Execute
    flat_in = prepare_rhythm_input(flat, 300.0)
    tiny = prepare_rhythm_input(rng.normal(0, 50, 10), 300.0)
    # Assert
    assert not flat_in.decidable and "few_beats" in flat_in.quality
    assert not tiny.decidable and tiny.signal.size <= 5


def test_windows_cover_a_long_recording_and_keep_a_short_one_whole() -> None:
    # Execute
    long_w = window_starts(61 * 300, 300.0)
    short_w = window_starts(9 * 300, 300.0)
    # Assert
    assert short_w == [(0, 2700)]
    assert long_w[0] == (0, 9000) and long_w[-1][1] == 61 * 300
    assert all(e - s == 9000 for s, e in long_w)
    assert all(b[0] - a[0] <= 3000 for a, b in zip(long_w, long_w[1:], strict=False))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 12_000),
    fs=st.sampled_from([50.0, 128.0, 130.0, 250.0, 300.0, 360.0, 500.0, 1000.0]),
    kind=st.sampled_from(["noise", "huge", "nan", "inf", "constant", "steps"]),
    seed=st.integers(0, 2**16),
)
def test_any_recording_gives_a_finite_input_and_a_verdict(
    n: int, fs: float, kind: str, seed: int
) -> None:
    # Prepare: hostile recordings of any length and rate
    from edge_agent.rhythm_verdict import recording_verdict

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 300.0, n)
    if kind == "huge":
        x *= 1e12
    elif kind == "nan":
        x[rng.random(n) < 0.3] = np.nan
    elif kind == "inf":
        x[rng.random(n) < 0.01] = np.inf
    elif kind == "constant":
        x[:] = 42.0
    elif kind == "steps":
        x = np.repeat(rng.normal(0.0, 500.0, n // 50 + 1), 50)[:n]

    class Uniform:
        classes = ("N", "AF", "O", "noisy")
        version = "u"

        def probabilities(self, inputs: list) -> np.ndarray:
            return np.full((len(inputs), 4), 0.25, np.float32)

    # Execute
    inp = prepare_rhythm_input(x, fs)
    verdict = recording_verdict(x, fs, Uniform())
    # Assert
    assert np.all(np.isfinite(inp.signal)) and np.all(np.isfinite(inp.features))
    assert np.abs(inp.signal).max(initial=0.0) <= CLIP
    assert verdict.label in Uniform.classes and (verdict.decided or verdict.label == "noisy")
    assert (n < 9 * fs) == ("too_short" in inp.quality)
