"""P-wave presence in the averaged beat (``common.signals.pwave``)."""

from __future__ import annotations

import numpy as np
import pytest

from common.signals.pwave import PWAVE_FEATURES, p_wave_features
from common.signals.rhythm_input import FEATURE_NAMES, KNOWN_FEATURES, prepare_rhythm_input

FS = 128.0


def _ecg(rr_s: np.ndarray, p_wave: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit QRS spikes at the RR intervals; a P wave 160-200 ms before each, or f waves."""
    peaks = np.round(np.cumsum(rr_s) * FS).astype(np.int64)
    x = np.zeros(int(peaks[-1] + FS))
    t = np.arange(x.size) / FS
    if p_wave:
        for p in peaks:
            x[p - 26 : p - 20] += [0.1, 0.2, 0.25, 0.2, 0.1, 0.0]
    else:  # fibrillatory waves: 6 Hz with a drifting phase, not tied to the QRS
        x += 0.08 * np.sin(2 * np.pi * 6.0 * t + np.cumsum(rng.normal(0, 0.3, x.size)))
    x[peaks] += 1.0
    return x + rng.normal(0, 0.01, x.size), peaks


def test_p_waves_before_sinus_beats_survive_premature_beats_and_af_has_none() -> None:
    rng = np.random.default_rng(3)
    rr = np.full(30, 0.8)
    rr[5::4] = 0.5  # every fourth beat premature (its compensatory pause after it)
    rr[6::4] = 1.1
    sinus = p_wave_features(*_ecg(rr, True, rng), FS)
    af = p_wave_features(*_ecg(rng.uniform(0.4, 1.0, 30), False, rng), FS)
    assert sinus[0] == pytest.approx(0.25, abs=0.05) and sinus[1] > 0.9 and sinus[2] > 1.0
    assert af[1] < 0.5 and af[2] < sinus[2] - 1.0


def test_too_few_beats_give_zeros_not_an_error() -> None:
    assert p_wave_features(np.zeros(500), np.array([100, 300]), FS).tolist() == [0.0, 0.0, 0.0]
    assert p_wave_features(np.zeros(0), np.zeros(0, np.int64), FS).tolist() == [0.0, 0.0, 0.0]


def test_rhythm_input_computes_the_features_a_card_names_in_its_order() -> None:
    rng = np.random.default_rng(0)
    x, _ = _ecg(np.full(25, 0.8), True, rng)
    raw = 1000.0 * x  # µV
    default = prepare_rhythm_input(raw, FS)
    both = prepare_rhythm_input(raw, FS, FEATURE_NAMES + PWAVE_FEATURES)
    only = prepare_rhythm_input(raw, FS, (PWAVE_FEATURES[1], FEATURE_NAMES[0]))
    assert KNOWN_FEATURES == FEATURE_NAMES + PWAVE_FEATURES
    assert both.features.shape == (18,) and np.array_equal(both.features[:15], default.features)
    assert only.features.tolist() == [both.features[16], both.features[0]]
    with pytest.raises(ValueError, match="unknown rhythm feature"):
        prepare_rhythm_input(raw, FS, ("p_wave_width",))
