"""Federated evaluation on the device (pure): how the round's model does on this device's own
labelled beats, before the device trains on them.

The device reports confusion counts, not scores: the aggregator sums them over the round's
devices and derives pooled sensitivity, positive predictivity and F1 per class
(``cloud_aggregator.closing.device_evaluation``), which an average of per-device F1 could not
give. Keys go in the update's metrics: ``eval_n`` and ``eval_tp_<i>``, ``eval_fp_<i>``,
``eval_fn_<i>`` per class index ``i`` (the release card's class order).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def head_predictions(
    emb: npt.NDArray[np.float32], weight: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """Class index per example of a softmax head: ``argmax(emb @ W.T + b)``; emb (n, E),
    W (C, E), b (C,)."""
    if len(emb) == 0:
        return np.zeros(0, np.int64)
    logits = emb.astype(np.float64) @ weight.astype(np.float64).T + bias.astype(np.float64)
    predicted: npt.NDArray[np.int64] = np.argmax(logits, axis=1).astype(np.int64)
    return predicted


def confusion_counts(
    predicted: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], n_classes: int
) -> dict[str, float]:
    """``eval_n`` and per class ``eval_tp_<i>``, ``eval_fp_<i>``, ``eval_fn_<i>`` (counts)."""
    out = {"eval_n": float(len(labels))}
    for i in range(n_classes):
        p, t = predicted == i, labels == i
        out[f"eval_tp_{i}"] = float(np.sum(p & t))
        out[f"eval_fp_{i}"] = float(np.sum(p & ~t))
        out[f"eval_fn_{i}"] = float(np.sum(~p & t))
    return out
