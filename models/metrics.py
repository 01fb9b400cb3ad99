"""Classification metrics (pure numpy): per-class Se/+P, macro-F1, accuracy, kappa, jk index.

Se (sensitivity, recall) = TP / (TP + FN); +P (positive predictivity, precision) =
TP / (TP + FP). The jk index of Mar et al. (2011), as used by Mondejar-Guerra et al. (2019):
``jk = 0.5 * kappa + 0.125 * (Se_S + +P_S + Se_V + +P_V)`` with Cohen's kappa over the N/S/V/F
confusion matrix. +P here is the strict one (F beats predicted as V count as false positives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def confusion_matrix(
    labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], n_classes: int
) -> npt.NDArray[np.int64]:
    """Counts ``cm[true, predicted]``, shape (n_classes, n_classes)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def cohen_kappa(cm: npt.NDArray[np.int64]) -> float:
    """Cohen's kappa of a confusion matrix (0 when undefined)."""
    total = cm.sum()
    if total == 0:
        return 0.0
    observed = np.trace(cm) / total
    expected = float(np.dot(cm.sum(axis=1), cm.sum(axis=0))) / total**2
    return float((observed - expected) / (1 - expected)) if expected < 1 else 0.0


def classification_metrics(
    labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], classes: Sequence[str]
) -> dict[str, Any]:
    """Per-class Se/+P/F1/support, macro-F1 (over classes with support), accuracy, kappa.

    Returns
    -------
    dict
        ``{"per_class": {name: {"se", "ppv", "f1", "support", "predicted"}}, "macro_f1",
        "accuracy", "kappa", "n", "classes", "confusion"}``; Se/+P are ``None`` when undefined
        (no true / no predicted examples of the class).
    """
    n_classes = len(classes)
    cm = confusion_matrix(labels, predicted, n_classes)
    per_class: dict[str, dict[str, Any]] = {}
    f1s: list[float] = []
    for i, name in enumerate(classes):
        tp = float(cm[i, i])
        support = int(cm[i].sum())
        npred = int(cm[:, i].sum())
        se = _ratio(tp, support)
        ppv = _ratio(tp, npred)
        f1 = 2 * tp / (support + npred) if support + npred > 0 else None
        per_class[name] = {"se": se, "ppv": ppv, "f1": f1, "support": support, "predicted": npred}
        if support > 0:
            f1s.append(f1 or 0.0)
    total = int(cm.sum())
    return {
        "classes": list(classes),
        "n": total,
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "kappa": cohen_kappa(cm),
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def jk_index(cm: npt.NDArray[np.int64], classes: Sequence[str]) -> dict[str, float]:
    """Mar et al. jk index from an AAMI confusion matrix with classes N, S, V, F (Q ignored).

    Returns ``{"jk", "j", "kappa_nsvf"}``.
    """
    idx = [list(classes).index(c) for c in ("N", "S", "V", "F")]
    sub = cm[np.ix_(idx, idx)]
    kappa = cohen_kappa(sub)
    j = 0.0
    for k in (1, 2):  # S, V
        tp = float(sub[k, k])
        j += (_ratio(tp, float(sub[k].sum())) or 0.0) + (_ratio(tp, float(sub[:, k].sum())) or 0.0)
    return {"jk": 0.5 * kappa + 0.125 * j, "j": j, "kappa_nsvf": kappa}
