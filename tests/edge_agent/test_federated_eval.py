"""Federated evaluation on the device: confusion counts of the round's head (pure)."""

from __future__ import annotations

import numpy as np

from edge_agent.federated_eval import confusion_counts, head_predictions


def test_head_predictions_and_counts() -> None:
    # Prepare: a 2-class head that reads the sign of the first embedding feature
    emb = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-0.5, 3.0]], np.float32)
    w = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
    b = np.zeros(2, np.float32)
    labels = np.array([1, 0, 0, 0])
    # Execute
    pred = head_predictions(emb, w, b)
    counts = confusion_counts(pred, labels, 2)
    # Assert
    assert pred.tolist() == [1, 0, 1, 0]
    assert counts == {"eval_n": 4.0, "eval_tp_0": 2.0, "eval_fp_0": 0.0, "eval_fn_0": 1.0,
                      "eval_tp_1": 1.0, "eval_fp_1": 1.0, "eval_fn_1": 0.0}  # fmt: skip
    assert head_predictions(np.zeros((0, 2), np.float32), w, b).shape == (0,)
