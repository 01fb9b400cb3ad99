"""Pooling and tables of the rhythm cross-validation's fold results (``models.rhythm_cv``).

A fold result holds, per model of :data:`MODELS`, the scored recordings' labels and record
probabilities; :func:`summarise` gives per-fold and pooled metrics (record-bootstrap intervals),
:func:`markdown` the tables docs/models.md shows, :func:`restored_folds` rebuilds folds an
earlier run scored from a model card's ``cv5_*`` tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.rhythm_metrics import CLASSES, rhythm_metrics, table_row

MODELS = ("teacher_fp32", "student_fp32", "student_int8", "softmax_fp32")
_F1_KEYS = ("f1_N", "f1_AF", "f1_O", "f1_noisy", "cinc_mean_f1")


def restored_folds(card_metrics: dict[str, Any], skip: set[int]) -> dict[str, Any] | None:
    """Folds an earlier run scored, rebuilt from a card's ``cv5_<model>`` tables.

    The record bootstrap resamples (label, prediction) pairs, so the pooled confusion matrix
    holds all it needs: its cells become pairs (in label order, recordings unnamed); the
    per-fold rows are the card's. Folds in ``skip`` (scored again in ``--out``) are refused,
    as the card pools them with the others.
    """
    first = card_metrics.get(f"cv5_{MODELS[0]}")
    if first is None:
        return None
    folds = [int(f) for f in first["folds_scored"]]
    if skip & set(folds):
        raise ValueError(f"fold(s) {sorted(skip & set(folds))} are both in the card and in --out")
    out: dict[str, Any] = {"test_folds": folds, "restored": True}
    for name in MODELS:
        m = card_metrics[f"cv5_{name}"]
        conf = np.asarray(m["confusion"], dtype=np.int64)
        ij = [(i, j) for i in range(conf.shape[0]) for j in range(conf.shape[1])]
        out[name] = {
            "labels": np.repeat([i for i, _ in ij], conf.ravel()).tolist(),
            "predicted": np.repeat([j for _, j in ij], conf.ravel()).tolist(),
            "per_fold": m["per_fold"],
        }
    return out


def _fold_rows(r: dict[str, Any], name: str) -> tuple[list[dict[str, float]], Any, Any]:
    """Table rows, labels and predictions of one fold result (or of restored folds)."""
    if r.get("restored"):
        m = r[name]
        return m["per_fold"], np.asarray(m["labels"]), np.asarray(m["predicted"])
    y = np.asarray(r[name]["labels"], dtype=np.int64)
    p = np.asarray(r[name]["probs"]).argmax(axis=1)
    return [table_row(rhythm_metrics(y, p))], y, p


def summarise(results: list[dict[str, Any]], bootstrap: int = 1000) -> dict[str, Any]:
    """Per-fold and pooled metrics of every model in fold results."""
    folds = [[f] for r in results for f in r["test_folds"] if r.get("restored")] + [
        r["test_folds"] for r in results if not r.get("restored")
    ]
    out: dict[str, Any] = {"classes": list(CLASSES), "folds": folds}
    for name in MODELS:
        per_fold, ys, ps = [], [], []
        for r in sorted(results, key=lambda r: not r.get("restored")):
            rows, y, p = _fold_rows(r, name)
            per_fold += rows
            ys.append(y)
            ps.append(p)
        pooled = rhythm_metrics(np.concatenate(ys), np.concatenate(ps), bootstrap=bootstrap)
        mean = {k: float(np.mean([f[k] for f in per_fold])) for k in per_fold[0]}
        out[name] = {"per_fold": per_fold, "mean_of_folds": mean, "pooled": pooled}
    out["seconds"] = [r["seconds"] for r in results if "seconds" in r]
    return out


def markdown(report: dict[str, Any]) -> str:
    """Per-fold and pooled F1 tables of a :func:`summarise` report."""
    lines = [
        "| model | fold | F1 N | F1 AF | F1 O | F1 noisy | CinC mean F1 (N, AF, O) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        rows = report[name]["per_fold"]
        labelled = [",".join(map(str, folds)) for folds in report["folds"]]
        labelled_rows = [
            *zip(labelled, rows, strict=True),
            ("mean of folds", report[name]["mean_of_folds"]),
        ]
        for label, row in labelled_rows:
            values = " | ".join(_num(row[k]) for k in _F1_KEYS)
            lines.append(f"| {name} | {label} | {values} |")
        pooled = report[name]["pooled"]
        ci = pooled["bootstrap"]["ci"]
        cells = [f"{_num(pooled['per_class'][c]['f1'])} {_ci(ci['f1_' + c])}" for c in CLASSES]
        cells.append(f"**{_num(pooled['cinc_mean_f1'])}** {_ci(ci['cinc_mean_f1'])}")
        lines.append(f"| {name} | pooled [95 % CI] | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(v: float | None) -> str:
    """Three decimals, or ``n/a`` when undefined (a class absent from the scored records, as
    in a smoke run)."""
    return "n/a" if v is None else f"{v:.3f}"


def _ci(bounds: list[float | None]) -> str:
    """``[lo-hi]`` (:func:`_num` each)."""
    lo, hi = bounds
    return f"[{_num(lo)}-{_num(hi)}]"
