"""Activity task: HMP parsing, feature models (softmax / MLP), torch-free ONNX parity, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from common.errors import CorruptInputError
from common.model_card import load_card
from common.signals.accel import FeatureClassifier
from models.feature_model import (
    feature_model_onnx_bytes,
    feature_model_to_json,
    fit_mlp,
    fit_softmax,
    predict_proba,
)
from models.tasks import activity
from models.tasks.activity import CLASSES, read_trial, segment_windows, trial_index
from models.tasks.base import LoadOptions


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian classes in 4-D, well separated on the first two axes."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]], dtype=float)
    y = rng.integers(0, 3, size=300)
    return centres[y] + rng.normal(size=(300, 4)), y.astype(np.int64)


@pytest.mark.parametrize("kind", ["softmax", "mlp"])
def test_feature_models_learn_and_export_identically(kind: str) -> None:
    # Prepare
    x, y = _blobs()
    model = fit_softmax(x, y, 3) if kind == "softmax" else fit_mlp(x, y, 3, hidden=(8,), epochs=200)
    # Execute
    p_np = predict_proba(model, x)
    session = ort.InferenceSession(
        feature_model_onnx_bytes(model), providers=["CPUExecutionProvider"]
    )
    p_onnx = session.run(["probs"], {"features": x.astype(np.float32)})[0]
    clf = FeatureClassifier.from_dict(feature_model_to_json(model, ("a", "b", "c"), list("wxyz")))
    # Assert
    assert np.mean(p_np.argmax(axis=1) == y) > 0.9
    np.testing.assert_allclose(p_onnx, p_np, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(x), p_np, atol=1e-12)


def test_mlp_is_reproducible_with_a_seed() -> None:
    x, y = _blobs(1)
    a = fit_mlp(x, y, 3, hidden=(4,), epochs=20, seed=7)
    b = fit_mlp(x, y, 3, hidden=(4,), epochs=20, seed=7)
    np.testing.assert_array_equal(a["layers"][0][0], b["layers"][0][0])


def test_read_trial_converts_codes_to_mg(tmp_path: Path) -> None:
    # Prepare
    good = tmp_path / "Accelerometer-2011-01-01-00-00-00-walk-f1.txt"
    good.write_text("0 63 21\r\n63 0 42\r\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("0 64 1\n")
    # Execute
    acc = read_trial(good)
    # Assert
    np.testing.assert_allclose(acc[0], [-1500.0, 1500.0, -500.0])
    with pytest.raises(CorruptInputError, match="0..63"):
        read_trial(bad)
    assert [w.shape for w in segment_windows(np.zeros((300, 3)))] == [(128, 3)] * 3
    assert segment_windows(np.zeros((50, 3)))[0].shape == (50, 3)


@pytest.mark.datasets("hmp_wrist_adl")
def test_real_hmp_index_and_one_volunteer(data_root: Path) -> None:
    # Prepare / Execute
    index = trial_index(data_root / "hmp_wrist_adl")
    data, trials = activity.load_windows(
        LoadOptions(env={**os.environ, "MEDCHAIN_DATA": str(data_root)}, records=["m8"])
    )
    # Assert
    assert len(index) == 839
    assert {a for a, _, _ in index} == set(CLASSES)
    assert len({v for _, v, _ in index}) == 16
    assert set(data.groups.tolist()) == {"m8"} and data.signal.shape[1:] == (3, 128)
    assert np.all(np.isfinite(data.features)) and trials.size == len(data)


def test_shipped_activity_model_matches_its_card() -> None:
    # Prepare
    folder = Path(__file__).resolve().parents[2] / "models" / "pretrained"
    card = load_card(folder / "activity_softmax.card.json")
    weights = json.loads((folder / "activity_softmax.json").read_text())
    # Execute
    clf = FeatureClassifier.from_dict(weights)
    # Assert
    assert card.classes == CLASSES == clf.classes
    assert card.onnx.inputs[0].shape == ("N", len(clf.feature_names))
