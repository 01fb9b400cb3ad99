"""Figures of a record-folder evaluation (pure numpy): gross, per record, record bootstrap,
and whether one record carries a result.

Input: the per-record confusion matrices of ``models.record_eval`` (``cm[reference,
predicted]`` of matched beats). Gross figures sum them; the 95 % confidence interval resamples
whole records with replacement (``resamples`` times, seeded) and takes the 2.5 and 97.5
percentiles of each figure (resamples where a figure is undefined, e.g. no reference SVEB, are
left out of that figure and counted). ``carried_by`` names, for S and V, the record holding the
largest share of the reference beats and the gross Se/+P without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.metrics import classification_metrics, jk_index

I64 = npt.NDArray[np.int64]
SCHEMA = "medchain.evaluate.beat.records/1"
FOCUS = ("S", "V")  # SVEB and VEB: the figures EC57 and de Chazal report
CARRY_SHARE = 0.5  # a record holding this share of a class's beats "carries" its result


def metrics_of(cm: I64, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class Se/+P/F1, macro-F1, accuracy, kappa, jk and the confusion of ``cm``."""
    k = len(classes)
    ref = np.repeat(np.arange(k), cm.sum(axis=1))
    pred = np.concatenate([np.repeat(np.arange(k), row) for row in cm]) if cm.sum() else ref
    out = classification_metrics(ref.astype(np.int64), pred.astype(np.int64), classes)
    if {"N", "S", "V", "F"} <= set(classes):
        out.update(jk_index(np.asarray(out["confusion"]), classes))
    return out


def figures(cm: npt.NDArray[Any], classes: Sequence[str]) -> dict[str, float | None]:
    """Se/+P of S and V, macro-F1 and accuracy of one (possibly resampled) confusion."""
    out: dict[str, float | None] = {}
    for c in FOCUS:
        if c not in classes:
            continue
        i = list(classes).index(c)
        tp, sup, pred = float(cm[i, i]), float(cm[i].sum()), float(cm[:, i].sum())
        out[f"se_{c}"] = tp / sup if sup else None
        out[f"ppv_{c}"] = tp / pred if pred else None
    total = float(cm.sum())
    out["accuracy"] = float(np.trace(cm)) / total if total else None
    present = cm.sum(axis=1) > 0
    if present.any():
        f1 = 2 * np.diag(cm) / np.maximum(cm.sum(axis=1) + cm.sum(axis=0), 1)
        out["macro_f1"] = float(np.mean(f1[present]))
    else:
        out["macro_f1"] = None
    return out


def bootstrap_ci(
    confusions: Sequence[I64], classes: Sequence[str], resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Record-bootstrap 95 % intervals of the figures of :func:`_figures`.

    Returns
    -------
    dict
        ``{"resamples", "seed", "records", "ci95": {figure: [lo, hi] or None},
        "defined": {figure: resamples where it was defined}}``.
    """
    stack = np.stack(confusions).astype(np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(stack), size=(resamples, len(stack)))
    values: dict[str, list[float]] = {}
    for row in draws:
        for key, val in figures(stack[row].sum(axis=0), classes).items():
            values.setdefault(key, [])
            if val is not None:
                values[key].append(val)
    ci = {
        k: (
            [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
            if v
            else None
        )
        for k, v in values.items()
    }
    return {
        "resamples": resamples,
        "seed": seed,
        "records": len(stack),
        "ci95": ci,
        "defined": {k: len(v) for k, v in values.items()},
    }


def carried_by(confusions: Mapping[str, I64], classes: Sequence[str]) -> dict[str, Any]:
    """Per S and V: the record with the most reference beats, its share, and the gross
    Se/+P without it; ``note`` says it in words when the share is :data:`CARRY_SHARE` or more."""
    out: dict[str, Any] = {}
    names = list(confusions)
    for c in FOCUS:
        if c not in classes:
            continue
        i = list(classes).index(c)
        counts = np.array([int(confusions[r][i].sum()) for r in names])
        total = int(counts.sum())
        if total == 0:
            continue
        top = int(np.argmax(counts))
        rest = sum(
            (confusions[r] for j, r in enumerate(names) if j != top),
            np.zeros_like(confusions[names[top]]),
        )
        figs = figures(rest, classes)
        entry: dict[str, Any] = {
            "record": names[top],
            "share": round(float(counts[top]) / total, 4),
            "beats": total,
            "without_it": {"se": figs[f"se_{c}"], "ppv": figs[f"ppv_{c}"]},
        }
        if entry["share"] >= CARRY_SHARE:
            se, ppv = entry["without_it"]["se"], entry["without_it"]["ppv"]
            entry["note"] = (
                f"{c}: record {names[top]} holds {100 * entry['share']:.0f} % of the {total} "
                f"reference {c} beats; without it Se {_pct(se)} / +P {_pct(ppv)}"
            )
        out[c] = entry
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def scored_summary(
    confusions: Mapping[str, I64],
    classes: Sequence[str],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Gross metrics, bootstrap CI and carried-by of a set of per-record confusions."""
    gross = sum(confusions.values(), np.zeros((len(classes), len(classes)), np.int64))
    return {
        "gross": metrics_of(gross, classes),
        "bootstrap": bootstrap_ci(list(confusions.values()), classes, resamples, seed),
        "carried_by": carried_by(confusions, classes),
    }


def short_line(summary: dict[str, Any]) -> str:
    """``SVEB Se 84.8 / +P 41.0, VEB Se 92.3 / +P 91.4, macro-F1 48.5``."""
    pc = summary["gross"]["per_class"]
    parts = [
        f"{name} Se {_pct(pc[c]['se'])} / +P {_pct(pc[c]['ppv'])}"
        for c, name in (("S", "SVEB"), ("V", "VEB"))
        if c in pc
    ]
    return ", ".join(parts) + f", macro-F1 {100 * summary['gross']['macro_f1']:.1f}"
