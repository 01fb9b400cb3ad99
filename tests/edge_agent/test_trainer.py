"""Light-mode head training, compression and personalisation (numpy + onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.fl_protocol import RoundConfig, decode_update, encode_update
from edge_agent import trainer as tr
from tests.cloud_aggregator.fl_support import C, E, tiny_beat_onnx, tiny_dataset


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    centres = np.eye(3, 6) * 3.0
    return (centres[labels] + rng.normal(0, 0.5, (n, 6))).astype(np.float32), labels


def test_train_head_learns_separable_classes() -> None:
    # Prepare
    emb, labels = _blobs(600, 0)
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    # Execute
    fit = tr.train_head(emb, labels, w0, b0, epochs=5, lr=0.1, batch_size=32)
    # Assert
    assert fit.accuracy > 0.97 and fit.loss < 0.2 and fit.n_examples == 600


def test_fedprox_term_keeps_the_head_near_the_global_one() -> None:
    emb, labels = _blobs(300, 1)
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    free = tr.train_head(emb, labels, w0, b0, epochs=5, lr=0.1, batch_size=32, mu=0.0)
    prox = tr.train_head(emb, labels, w0, b0, epochs=5, lr=0.1, batch_size=32, mu=1.0)
    assert np.linalg.norm(prox.weight) < 0.8 * np.linalg.norm(free.weight)


def test_class_weights_favour_rare_classes() -> None:
    w = tr.class_weights(np.array([0] * 90 + [1] * 10), 3, 1.0)
    assert w[1] > w[0] and w[2] == 0


def test_head_update_is_compressed_with_bounded_error_and_clipped() -> None:
    # Prepare
    emb, labels = _blobs(400, 2)
    glob = {tr.HEAD_W: np.zeros((3, 6), np.float32), tr.HEAD_B: np.zeros(3, np.float32)}
    cfg = RoundConfig(local_epochs=2, lr=0.1, batch_size=32, clip_norm=0.5, compression="int8")
    # Execute
    update, fit = tr.head_update(
        round_id="4",
        client_id="c1",
        base_version="v1",
        global_tensors=glob,
        emb=emb,
        labels=labels,
        config=cfg,
    )
    wire = encode_update(update)
    back = decode_update(wire)
    # Assert
    norm = np.sqrt(sum(float(np.sum(v**2)) for v in update.delta.values()))
    assert norm == pytest.approx(0.5, rel=1e-4)
    assert update.compression == "int8" and 0 < update.compression_error <= 0.02
    assert len(wire) < 1000  # 3x6 + 3 int8 values plus the header
    np.testing.assert_allclose(back.delta[tr.HEAD_W], update.delta[tr.HEAD_W], atol=0.5 / 127)


def test_compression_falls_back_when_int8_error_is_too_large() -> None:
    delta = {"w": np.array([1e3, 1e-3, -1e-3, 2e-3], np.float32)}
    assert tr.compress_delta(delta, 1e-9)[0] == "none"
    assert tr.compress_delta(delta, 0.1)[0] == "int8"


def test_personal_head_round_trips_and_improves_on_patient_data(tmp_path: Path) -> None:
    # Prepare: the patient's classes sit elsewhere than the population's
    model, head = tiny_beat_onnx()
    embedder = tr.OnnxEmbedder(model)
    x, y = tiny_dataset(400, 3, shift=0.7)
    emb = embedder.embed(x)
    # Execute
    personal = tr.personalise(head, "v2", emb[:200], y[:200])
    tr.save_personal_head(personal, tmp_path)
    loaded = tr.load_personal_head(tmp_path)
    # Assert
    assert emb.shape == (400, E) and loaded is not None
    assert loaded.base_version == "v2" and loaded.weight.shape == (C, E)
    before = np.mean(
        np.argmax(tr.head_probs(emb[200:], head["head.weight"], head["head.bias"]), 1) == y[200:]
    )
    after = np.mean(np.argmax(loaded.predict(emb[200:]), 1) == y[200:])
    assert after > before + 0.2


def test_missing_or_corrupt_personal_head_means_global(tmp_path: Path) -> None:
    assert tr.load_personal_head(tmp_path) is None
    (tmp_path / tr.PERSONAL_HEAD_FILE).write_bytes(b"not an npz")
    assert tr.load_personal_head(tmp_path) is None
