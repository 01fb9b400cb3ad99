"""Rhythm metrics (pure numpy): per-class Se/+P/F1, the CinC 2017 score, bootstrap intervals.

The PhysioNet/CinC Challenge 2017 scored entries by the mean F1 of N, AF and O (the noisy class
counts as a class everyone can predict, but its F1 is not in the score); :func:`rhythm_metrics`
reports it as ``cinc_mean_f1`` beside every class's figures. With ``bootstrap`` > 0 the whole
recordings are resampled (``models.cv.bootstrap_ci``) for 95 % intervals of the score and of
each class's F1. MIT-BIH window groups (``mitdb/1xx``, ``mitdb/2xx``) also get the AF figures
per record series, as the v1 reports did.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from models.cv import bootstrap_ci
from models.metrics import classification_metrics
from models.rhythm_softmax import report as v1_report

CLASSES: tuple[str, ...] = ("N", "AF", "O", "noisy")
SCORED: tuple[str, ...] = ("N", "AF", "O")
IntArray = npt.NDArray[np.int64]


def f1_score(labels: IntArray, predicted: IntArray, k: int) -> float:
    """F1 of class ``k`` (0 when the class is neither present nor predicted)."""
    tp = float(np.sum((labels == k) & (predicted == k)))
    denom = float(np.sum(labels == k) + np.sum(predicted == k))
    return 2 * tp / denom if denom else 0.0


def _class_f1(labels: IntArray, predicted: IntArray, *, k: int) -> float:
    return f1_score(labels, predicted, k)


def cinc_mean_f1(
    labels: IntArray, predicted: IntArray, classes: tuple[str, ...] = CLASSES
) -> float:
    """Mean F1 of N, AF and O (the CinC 2017 score)."""
    return float(np.mean([f1_score(labels, predicted, classes.index(c)) for c in SCORED]))


def rhythm_metrics(
    labels: npt.ArrayLike,
    predicted: npt.ArrayLike,
    *,
    classes: tuple[str, ...] = CLASSES,
    groups: npt.ArrayLike | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-class metrics + ``cinc_mean_f1`` + ``af_f1`` (+ ``bootstrap``, + ``by_group``).

    Parameters
    ----------
    labels, predicted : array_like of int, shape (n,)
        Class indices into ``classes`` (one entry per recording or window).
    groups : array_like of str, optional
        ``mitdb/NAME`` window groups: adds the AF figures per MIT-BIH record series.
    bootstrap : int
        Record resamples for 95 % percentile intervals (0 = none).
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(predicted, dtype=np.int64).ravel()
    out = classification_metrics(y, p, classes)
    out["cinc_mean_f1"] = cinc_mean_f1(y, p, classes)
    out["af_f1"] = f1_score(y, p, classes.index("AF"))
    if bootstrap:
        ci = {
            "cinc_mean_f1": bootstrap_ci(
                lambda a, b: cinc_mean_f1(a, b, classes), y, p, n_resamples=bootstrap, seed=seed
            )
        }
        for k, name in enumerate(classes):
            ci[f"f1_{name}"] = bootstrap_ci(
                partial(_class_f1, k=k), y, p, n_resamples=bootstrap, seed=seed
            )
        out["bootstrap"] = {
            "resamples": bootstrap,
            "level": 0.95,
            "seed": seed,
            "unit": "recording",
            "ci": {k: list(v) for k, v in ci.items()},
        }
    if groups is not None:
        names = np.asarray([str(g).removeprefix("mitdb/") for g in np.asarray(groups).ravel()])
        out["by_group"] = v1_report(y, p, names.astype(np.str_), classes)["by_group"]
    return out


def table_row(metrics: dict[str, Any], classes: tuple[str, ...] = CLASSES) -> dict[str, float]:
    """F1 per class + ``cinc_mean_f1`` + accuracy, for tables."""
    row = {f"f1_{c}": float(metrics["per_class"][c]["f1"] or 0.0) for c in classes}
    return row | {
        "cinc_mean_f1": float(metrics["cinc_mean_f1"]),
        "accuracy": float(metrics["accuracy"]),
    }
