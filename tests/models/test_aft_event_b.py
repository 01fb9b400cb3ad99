"""Event B (S vs T) of AF termination: end-of-record features and nested leave-one-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import aft_event_b


def test_nested_loo_picks_the_informative_set_and_scores_it() -> None:
    # Setup: column 0 separates the classes, column 1 is noise
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10).astype(np.int64)
    x = np.column_stack([y * 3.0 + rng.normal(0, 0.5, 20), rng.normal(0, 1, 20)])
    # Execute
    res = aft_event_b.nested_loo(x, y, {"noise": [1], "signal": [0]})
    # Assert
    assert res["chosen"] == ["signal"] * 20
    assert res["correct"] == 20 and res["per_set"]["signal"] == 20
    assert res["per_set"]["noise"] < 15


def test_end_features_read_the_last_seconds() -> None:
    # Setup: 60 s at 128 Hz, atrial 6 Hz then 4 Hz in the last 10 s, RR 0.6 s then 1.0 s
    fs, n = 128.0, 7680
    t = np.arange(n) / fs
    atrial = np.where(t < 50, np.sin(2 * np.pi * 6 * t), np.sin(2 * np.pi * 4 * t)) * 50.0
    peaks = np.concatenate([np.arange(64, 50 * 128, 77), np.arange(50 * 128, n - 64, 128)])
    ecg = np.repeat(atrial[:, None], 2, axis=1)
    for p in peaks:
        ecg[p - 3 : p + 3] += 1000.0
    # Execute
    f = dict(zip(aft_event_b.END_FEATURES, aft_event_b.end_features(ecg, peaks, fs), strict=True))
    # Assert
    assert f["daf_median_lead1_hz"] == pytest.approx(6.0, abs=0.3)
    assert f["daf_last10s_lead1_hz"] == pytest.approx(4.0, abs=0.3)
    assert f["daf_drop_lead1_hz"] > 1.5
    assert f["rr_last5_ratio"] > 1.2 and f["rr_last_s"] == pytest.approx(1.0)


def test_too_few_beats_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="R peaks"):
        aft_event_b.end_features(np.zeros((7680, 2)), np.array([10, 200, 400]), 128.0)


@pytest.mark.datasets("aftdb")
def test_learning_set_event_b(data_root: Path) -> None:
    # Execute
    res = aft_event_b.evaluate({"MEDCHAIN_DATA": str(data_root)})
    # Assert: the 10 S and 10 T records, one chosen set per held-out record
    assert res["n"] == 20 and len(res["records"]) == 20 and len(res["chosen"]) == 20
    assert set(res["chosen"]) <= set(aft_event_b.CANDIDATES)
    assert 0 <= res["correct"] <= 20
