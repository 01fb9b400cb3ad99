"""Accelerometer: ENMO activity levels, fall simulation, inactivity alerts, features, classifier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from common.signals.accel import (
    ACC_FEATURE_NAMES,
    FallDetector,
    FeatureClassifier,
    InactivityMonitor,
    acc_activity_level,
    acc_enmo,
    acc_features,
)

FS = 50.0


def still(seconds: float, gravity_axis: int, seed: int) -> np.ndarray:
    """Acceleration (n, 3) in mg of a motionless wrist with gravity along one axis."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 5, size=(int(seconds * FS), 3))
    a[:, gravity_axis] += 1000.0
    return a


def simulated_fall(seed: int = 0) -> tuple[np.ndarray, int]:
    """Standing 5 s -> 0.4 s free fall -> 3.5 g impact -> lying still 10 s (gravity on x)."""
    rng = np.random.default_rng(seed)
    before = still(5, 2, seed)
    free_fall = rng.normal(0, 20, size=(int(0.4 * FS), 3)) + [0, 0, 200]
    impact = np.array([[2500.0, 800.0, 2200.0], [1200.0, 300.0, 900.0]])
    after = still(10, 0, seed + 1)
    x = np.vstack([before, free_fall, impact, after])
    return x, before.shape[0] + free_fall.shape[0]


def test_fall_is_detected_once_at_the_impact() -> None:
    # Prepare
    x, impact_at = simulated_fall()
    det = FallDetector(FS)
    # Execute: chunked like a BLE stream
    events = [e for i in range(0, x.shape[0], 37) for e in det.push(x[i : i + 37])]
    # Assert
    assert len(events) == 1
    assert events[0].sample == impact_at
    assert events[0].peak_mg > 3000
    assert events[0].orientation_change_deg > 60


@pytest.mark.parametrize("case", ["clapping", "sitting_down_hard"])
def test_impacts_without_a_fall_are_not_falls(case: str) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    if case == "clapping":  # repeated 3 g impacts while the arm keeps moving
        x = still(12, 2, 0)
        t = np.arange(x.shape[0]) / FS
        x[:, 0] += 800 * np.sin(2 * np.pi * 2 * t)
        x[:: int(FS / 2), 0] += 3000
    else:  # one hard impact, orientation unchanged, then still
        x = np.vstack([still(5, 2, 1), [[300.0, 200.0, 2800.0]], still(8, 2, 2)])
    x += rng.normal(0, 2, size=x.shape)
    # Execute
    events = FallDetector(FS).push(x)
    # Assert
    assert events == []


def test_enmo_and_activity_levels() -> None:
    # Prepare: 10 s still, then 10 s vigorous shaking (ENMO ~ hundreds of mg)
    rest = still(10, 2, 0)
    t = np.arange(int(10 * FS)) / FS
    shake = still(10, 2, 1)
    shake[:, 0] += 3000 * np.sin(2 * np.pi * 2.5 * t)
    # Execute
    enmo, levels = acc_activity_level(np.vstack([rest, shake]), FS, epoch_s=5.0)
    # Assert
    assert enmo.shape == (4,)
    assert levels[:2] == ["sedentary", "sedentary"]
    assert levels[2:] == ["vigorous", "vigorous"]
    assert np.all(acc_enmo(rest) >= 0) and float(np.mean(acc_enmo(rest))) < 10


def test_inactivity_alert_fires_once_and_rearms() -> None:
    # Prepare: 70 s still, 3 s movement, 70 s still; alert after 60 s
    moving = still(3, 2, 5)
    moving[:, 1] += 500 * np.sin(np.arange(moving.shape[0]) / 3)
    x = np.vstack([still(70, 2, 1), moving, still(70, 2, 2)])
    mon = InactivityMonitor(FS, alert_after_s=60.0)
    # Execute
    alerts = [a for i in range(0, x.shape[0], 100) for a in mon.push(x[i : i + 100])]
    # Assert
    assert len(alerts) == 2
    assert alerts[0] == pytest.approx(60 * FS - 1, abs=FS)
    assert alerts[1] == pytest.approx((73 + 60) * FS - 1, abs=2 * FS)


def test_features_and_classifier_round_trip() -> None:
    # Prepare: a 2-class, 2-layer model reading one feature (x_mean) built by hand
    k = len(ACC_FEATURE_NAMES)
    w0 = np.zeros((k, 2))
    w0[0] = [1.0, -1.0]  # ReLU units: x_mean > 0, x_mean < 0
    clf = FeatureClassifier.from_dict(
        {
            "classes": ["down", "up"],
            "feature_names": list(ACC_FEATURE_NAMES),
            "mean": [0.0] * k,
            "scale": [1.0] * k,
            "layers": [
                {"weight": w0.tolist(), "bias": [0.0, 0.0]},
                {"weight": [[0.0, 10.0], [10.0, 0.0]], "bias": [0.0, 0.0]},
            ],
        }
    )
    # Execute
    up_label, up_p = clf.classify_activity(still(4, 0, 0), 32.0)
    down_label, _ = clf.classify_activity(-still(4, 0, 1), 32.0)
    feats = acc_features(still(4, 2, 0), 32.0)
    # Assert
    assert (up_label, down_label) == ("up", "down")
    assert up_p.sum() == pytest.approx(1.0)
    assert feats.shape == (k,) and np.all(np.isfinite(feats))
    assert feats[ACC_FEATURE_NAMES.index("z_mean")] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"classes": ["a"], "feature_names": ["f"], "mean": [0], "scale": [1], "layers": []},
        {
            "classes": ["a"],
            "feature_names": ["f"],
            "mean": [0],
            "scale": [0],
            "layers": [{"weight": [[1]], "bias": [0]}],
        },
        {
            "classes": ["a", "b"],
            "feature_names": ["f"],
            "mean": [0],
            "scale": [1],
            "layers": [{"weight": [[1]], "bias": [0]}],
        },
    ],
)
def test_malformed_model_json_is_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        FeatureClassifier.from_dict(bad)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        acc_enmo(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="positive"):
        FallDetector(0.0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    arrays(np.float64, st.tuples(st.integers(0, 300), st.just(3)), elements=st.floats(-1e7, 1e7))
)
def test_any_finite_input_never_crashes(x: np.ndarray) -> None:
    # Execute
    falls = FallDetector(FS, confirm_s=1.0).push(x)
    alerts = InactivityMonitor(FS, alert_after_s=1.0).push(x)
    enmo, levels = acc_activity_level(x, FS, epoch_s=1.0)
    # Assert
    assert all(np.isfinite(f.orientation_change_deg) for f in falls)
    assert all(0 <= a < max(x.shape[0], 1) for a in alerts)
    assert len(levels) == enmo.size
    if x.shape[0] >= 4:
        assert acc_features(x, FS).shape == (len(ACC_FEATURE_NAMES),)
