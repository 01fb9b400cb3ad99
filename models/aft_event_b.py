"""AF termination event B (S vs T): end-of-record features and their nested leave-one-out.

Event B of the PhysioNet/CinC Challenge 2004 asks whether AF ends immediately after a one-minute
record (T) or one minute later (S). The literature ties imminent termination to what happens in
the last seconds (Petrutiu et al. 2007: the atrial rate falls just before termination; RR
prolongation and trend in several challenge entries), so this module measures the end of the
record against the whole of it, on both leads:

- ``daf_last{3,10}s_lead{0,1}_hz``: dominant atrial frequency of the last 3 s / 10 s (after
  QRST cancellation, :mod:`common.signals.rhythm`), and ``daf_drop_lead{0,1}_hz`` = median DAF
  of the record minus that of its last 10 s;
- ``rr_last5_ratio``: mean of the last 5 RR intervals over the record's mean RR;
  ``rr_last_s``: the last RR interval; ``rr_slope_s_per_min``: least-squares RR trend;
  ``tail_s``: time from the last R peak to the end of the record.

Candidate feature sets are fixed here before looking at any result (:data:`CANDIDATES`); the
set is chosen inside each outer leave-one-out fold by an inner leave-one-out on the other 19
records (:func:`nested_loo`), so the outer count is not tuned to the records it scores.

    python -m models.aft_event_b            # JSON: per-feature separation, per-set LOO, nested LOO
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from common.signals.rhythm import atrial_spectrum_features, qrst_cancel
from models.feature_model import fit_softmax, predict_proba

FloatArray = npt.NDArray[np.float64]

END_FEATURES: tuple[str, ...] = (
    "daf_median_lead0_hz",
    "daf_median_lead1_hz",
    "daf_last3s_lead0_hz",
    "daf_last3s_lead1_hz",
    "daf_last10s_lead0_hz",
    "daf_last10s_lead1_hz",
    "daf_drop_lead0_hz",
    "daf_drop_lead1_hz",
    "rr_last5_ratio",
    "rr_last_s",
    "rr_slope_s_per_min",
    "tail_s",
)
#: Feature sets compared by the inner leave-one-out (names of :data:`END_FEATURES`).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "daf_median": ("daf_median_lead0_hz", "daf_median_lead1_hz"),
    "daf_end": ("daf_last3s_lead1_hz", "daf_last10s_lead1_hz", "daf_drop_lead1_hz"),
    "daf_end_both_leads": (
        "daf_last3s_lead0_hz",
        "daf_last3s_lead1_hz",
        "daf_drop_lead0_hz",
        "daf_drop_lead1_hz",
    ),
    "rr_end": ("rr_last5_ratio", "rr_last_s", "rr_slope_s_per_min", "tail_s"),
    "daf_end_and_rr_end": (
        "daf_last3s_lead1_hz",
        "daf_drop_lead1_hz",
        "rr_last5_ratio",
        "rr_last_s",
        "tail_s",
    ),
}
L2 = 1.0


def end_features(ecg_uv: FloatArray, r_peaks: npt.NDArray[np.int64], fs: float) -> FloatArray:
    """The :data:`END_FEATURES` of one record.

    Parameters
    ----------
    ecg_uv : ndarray, shape (n, 2)
        Both leads, µV (any unit: only frequencies and times are used).
    r_peaks : ndarray of int, shape (k,)
        R-peak sample indices, k >= 6.
    fs : float
        Sampling rate, Hz.

    Returns
    -------
    ndarray, shape (12,)
    """
    if r_peaks.size < 6:
        raise ValueError(f"{r_peaks.size} R peaks: at least 6 are needed for the RR features")
    win, step = round(10 * fs), round(2.5 * fs)
    per_lead: dict[str, list[float]] = {"median": [], "last3": [], "last10": []}
    for lead in range(2):
        res = qrst_cancel(ecg_uv[:, lead], fs, r_peaks)
        starts = range(0, max(res.size - win, 0) + 1, step)
        per_lead["median"].append(
            float(np.median([atrial_spectrum_features(res[s : s + win], fs)[0] for s in starts]))
        )
        per_lead["last3"].append(float(atrial_spectrum_features(res[-round(3 * fs) :], fs)[0]))
        per_lead["last10"].append(float(atrial_spectrum_features(res[-win:], fs)[0]))
    rr = np.diff(r_peaks) / fs
    t_min = r_peaks[1:] / fs / 60.0
    drop = [m - last for m, last in zip(per_lead["median"], per_lead["last10"], strict=True)]
    return np.array(
        [
            *per_lead["median"],
            *per_lead["last3"],
            *per_lead["last10"],
            *drop,
            float(rr[-5:].mean() / rr.mean()),
            float(rr[-1]),
            float(np.polyfit(t_min, rr, 1)[0]),
            float((ecg_uv.shape[0] - 1 - r_peaks[-1]) / fs),
        ]
    )


def loo_correct(x: FloatArray, y: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Leave-one-out of a binary softmax (L2 = :data:`L2`): whether each record is right."""
    ok = np.zeros(len(y), dtype=bool)
    for i in range(len(y)):
        train = np.arange(len(y)) != i
        model = fit_softmax(x[train], y[train], 2, l2=L2)
        ok[i] = int(predict_proba(model, x[i : i + 1])[0].argmax()) == y[i]
    return ok


def nested_loo(
    x: FloatArray, y: npt.NDArray[np.int64], candidates: dict[str, list[int]]
) -> dict[str, Any]:
    """Outer leave-one-out whose feature set is chosen by an inner leave-one-out.

    Parameters
    ----------
    x : ndarray, shape (n, f)
        Features of the n records.
    y : ndarray of int, shape (n,)
        0 / 1 labels.
    candidates : dict
        Set name -> column indices of ``x``; ties go to the first listed.

    Returns
    -------
    dict
        ``correct`` (outer), ``n``, ``chosen`` (set name per held-out record) and ``per_set``
        (plain leave-one-out count of each set on all n records: optimistic if one is picked
        by looking at it).
    """
    chosen: list[str] = []
    correct = 0
    for i in range(len(y)):
        train = np.arange(len(y)) != i
        scores = {
            name: int(loo_correct(x[train][:, cols], y[train]).sum())
            for name, cols in candidates.items()
        }
        best = max(scores, key=lambda k: scores[k])  # first of the ties: dicts keep order
        chosen.append(best)
        cols = candidates[best]
        model = fit_softmax(x[train][:, cols], y[train], 2, l2=L2)
        correct += int(int(predict_proba(model, x[i : i + 1, cols])[0].argmax()) == y[i])
    per_set = {name: int(loo_correct(x[:, c], y).sum()) for name, c in candidates.items()}
    return {"correct": correct, "n": int(len(y)), "chosen": chosen, "per_set": per_set}


def separation(x: FloatArray, y: npt.NDArray[np.int64]) -> dict[str, float]:
    """d' of every column between the two classes (mean difference over pooled SD)."""
    a, b = x[y == 0], x[y == 1]
    pooled = np.sqrt((a.var(axis=0) + b.var(axis=0)) / 2) + 1e-12
    d = (a.mean(axis=0) - b.mean(axis=0)) / pooled
    return {n: round(float(v), 3) for n, v in zip(END_FEATURES, d, strict=True)}


def evaluate(env: dict[str, str]) -> dict[str, Any]:
    """Event B on the AFTDB learning set's 10 S and 10 T records."""
    from common.datasets import dataset_dir
    from models.tasks.aft import FS_HZ, SPLITS, read_record

    folder = dataset_dir("aftdb", env) / SPLITS["learning"]
    names = sorted(p.stem for p in folder.glob("[st]*.hea"))
    rows = [end_features(*read_record(folder, n), FS_HZ) for n in names]
    x, y = np.array(rows), np.array([int(n[0] == "t") for n in names], dtype=np.int64)
    cols = {k: [END_FEATURES.index(f) for f in v] for k, v in CANDIDATES.items()}
    res = nested_loo(x, y, cols)
    return {
        "event": "B: S (0) vs T (1), AFTDB learning set",
        "records": names,
        "separation_d_prime": separation(x, y),
        "candidates": {k: list(v) for k, v in CANDIDATES.items()},
        **res,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m models.aft_event_b``: print :func:`evaluate` as JSON."""
    del argv
    sys.stdout.write(json.dumps(evaluate(dict(os.environ)), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
