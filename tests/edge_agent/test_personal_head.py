"""MAP personal head: Newton fit with the global head as a Gaussian prior."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent import personal_head as ph


def _patient(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    centres = np.eye(3, 6) * 2.0 + 1.0
    return (centres[labels] + rng.normal(0, 0.6, (n, 6))).astype(np.float32), labels


def _objective_grad(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    p = ph.head_probs(x, w, b).astype(np.float64)
    g = p - np.eye(w.shape[0])[y]
    return g.T @ x + tau * (w - w0), g.sum(0) + tau * (b - b0)


def test_map_fit_reaches_a_stationary_point_of_the_objective() -> None:
    x, y = _patient(300, 0)
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    w, b, it = ph.fit_map_head(x, y, w0, b0, tau=2.0, balance=0.0)
    gw, gb = _objective_grad(x, y, w, b, w0, b0, 2.0)
    assert it < 50
    assert np.abs(gw).max() < 1e-2 and np.abs(gb).max() < 1e-2


def test_prior_precision_trades_the_global_head_for_the_patient() -> None:
    x, y = _patient(300, 1)
    rng = np.random.default_rng(2)
    w0, b0 = rng.normal(0, 1, (3, 6)).astype(np.float32), np.zeros(3, np.float32)
    strong, _, _ = ph.fit_map_head(x, y, w0, b0, tau=1e5)
    weak, wb, _ = ph.fit_map_head(x, y, w0, b0, tau=0.1)
    assert np.abs(strong - w0).max() < 0.05
    global_acc = np.mean(np.argmax(ph.head_probs(x, w0, b0), 1) == y)
    assert np.mean(np.argmax(ph.head_probs(x, weak, wb), 1) == y) > max(0.95, global_acc + 0.2)


def test_a_class_the_patient_never_showed_loses_probability() -> None:
    x, y = _patient(300, 3)
    keep = y != 2
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", x[keep], y[keep])
    assert head.n_examples == int(keep.sum())
    assert head.predict(x[~keep])[:, 2].mean() < 1 / 3


def test_no_labelled_beats_means_the_global_head() -> None:
    w0 = np.ones((3, 6), np.float32)
    b0 = np.arange(3, dtype=np.float32)
    head = ph.personalise(
        {ph.HEAD_W: w0, ph.HEAD_B: b0},
        "v1",
        np.zeros((0, 6), np.float32),
        np.zeros(0, np.int64),
    )
    assert head.n_examples == 0
    np.testing.assert_array_equal(head.weight, w0)
    np.testing.assert_array_equal(head.bias, b0)


def test_class_weights_balance_rare_classes() -> None:
    y = np.array([0] * 90 + [1] * 10, np.int64)
    w = ph.class_weights(y, 3, 1.0)
    assert w[2] == 0 and w[1] == pytest.approx(9 * w[0])
    assert float(np.mean(w[y])) == pytest.approx(1.0)


def test_non_positive_prior_precision_is_refused() -> None:
    x, y = _patient(10, 4)
    with pytest.raises(ValueError, match="tau"):
        ph.fit_map_head(x, y, np.zeros((3, 6)), np.zeros(3), tau=0.0)
