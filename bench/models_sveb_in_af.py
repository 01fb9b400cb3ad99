"""Where a beat model's S calls fall relative to annotated atrial fibrillation / flutter.

    python bench/models_sveb_in_af.py                       # shipped beat.onnx, DS2
    python bench/models_sveb_in_af.py --model M --split ds1 --window 32 --threshold 0.1

For every record of the split: the model's false and true S calls (reference beat labels) and how
many lie inside an ``(AFIB`` / ``(AFL`` rhythm episode of the ``atr`` annotations (beats in AF
carry no SVEB label, so an S call there is a false alarm), and the share of AF beats, non-AF
SVEBs and other non-AF beats whose causal RR irregularity (median |successive RR difference| /
median RR over the last ``--window`` RR, ``edge_agent.af_events.rr_irregularity``) exceeds
``--threshold``: what an irregularity rule would catch and what it would cost. Prints one JSON
object. Analysis only: it chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir, default_cache_dir  # noqa: E402
from common.signals import beats_in_bounds, ecg_clean  # noqa: E402
from common.signals import rr_features as compute_rr  # noqa: E402
from edge_agent.af_events import rr_irregularity  # noqa: E402
from models.data.mitdb import DS1, DS2, read_record  # noqa: E402
from models.predict import onnx_predictor  # noqa: E402
from models.tasks import LoadOptions, get_task  # noqa: E402
from models.tasks.beat import BEAT_SPEC  # noqa: E402

AF_RHYTHMS = ("(AFIB", "(AFL")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "beat.onnx"


def rhythm_at(folder: Path, name: str, samples: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """The rhythm note (``"(N"``, ``"(AFIB"``...) in force at each sample of ``samples``."""
    import wfdb

    ann = wfdb.rdann(str(folder / name), "atr")
    notes = [(int(s), str(a).strip("\x00")) for s, a in zip(ann.sample, ann.aux_note, strict=True)]
    changes = [(s, a) for s, a in notes if a.startswith("(")]
    starts = np.array([s for s, _ in changes], dtype=np.int64)
    labels = np.array([""] + [a for _, a in changes])
    return labels[np.searchsorted(starts, samples, side="right")]


def irregularity(samples: npt.NDArray[np.int64], fs: float, window: int) -> npt.NDArray[np.float64]:
    """Causal RR irregularity at each beat (NaN until ``window + 1`` beats are known)."""
    rr = np.diff(samples) / fs
    out = np.full(samples.size, np.nan)
    for i in range(window + 1, samples.size):
        out[i] = rr_irregularity(rr[i - window : i])
    return out


def record_row(
    folder: Path, name: str, pred: npt.NDArray[np.int64], labels: Any, args: Any
) -> dict[str, Any]:
    """Counts for one record (``pred`` and ``labels`` in the task loader's beat order)."""
    rec = read_record(folder, name)
    clean = ecg_clean(rec.signal_uv, rec.fs, BEAT_SPEC.filter)
    rr = compute_rr(rec.beat_samples, rec.fs, BEAT_SPEC)
    # the loader's own selection (models.tasks.beat.preprocess_record), so beats line up
    ok = beats_in_bounds(rec.beat_samples, clean.size, rec.fs, BEAT_SPEC) & np.all(
        np.isfinite(rr), axis=1
    )
    samples = rec.beat_samples[ok]
    if samples.size != pred.size:
        raise RuntimeError(f"record {name}: {samples.size} beats, {pred.size} predictions")
    in_af = np.isin(rhythm_at(folder, name, samples), AF_RHYTHMS)
    irr = irregularity(rec.beat_samples, rec.fs, args.window)[ok]
    high = np.nan_to_num(irr, nan=0.0) > args.threshold
    s_ref, s_pred = labels == args.s_index, pred == args.s_index
    return {
        "false_s": int((s_pred & ~s_ref).sum()),
        "false_s_in_af": int((s_pred & ~s_ref & in_af).sum()),
        "true_s": int((s_pred & s_ref).sum()),
        "true_s_in_af": int((s_pred & s_ref & in_af).sum()),
        "af_beats": int(in_af.sum()),
        "af_beats_irregular": int((in_af & high).sum()),
        "svebs_outside_af": int((s_ref & ~in_af).sum()),
        "svebs_outside_af_irregular": int((s_ref & ~in_af & high).sum()),
        "true_s_irregular": int((s_pred & s_ref & high).sum()),
        "false_s_irregular": int((s_pred & ~s_ref & high).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--split", choices=("ds1", "ds2"), default="ds2")
    ap.add_argument("--window", type=int, default=32, help="RR intervals per irregularity value")
    ap.add_argument("--threshold", type=float, default=0.1, help="irregularity called high")
    registry.add_record_argument(ap, "models_sveb_in_af")
    args = ap.parse_args()
    env = dict(os.environ)
    task = get_task("beat")
    args.s_index = task.classes.index("S")
    folder = dataset_dir("mitdb", env)
    predict = onnx_predictor(args.model)
    rows: dict[str, dict[str, Any]] = {}
    for name in DS1 if args.split == "ds1" else DS2:
        opts = LoadOptions(
            env=env, records=[name], cache_dir=default_cache_dir(env) / "preprocessed"
        )
        data = task.load(args.split, opts)
        pred = predict(data).argmax(axis=1)
        rows[name] = record_row(folder, name, pred, data.labels, args)
    total = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    called = total["false_s"] + total["true_s"]
    kept = called - total["false_s_in_af"] - total["true_s_in_af"]
    result = {
        "bench": "models_sveb_in_af",
        "model": str(args.model),
        "split": args.split,
        "window_rr": args.window,
        "threshold": args.threshold,
        "total": total,
        "sveb_ppv_now": total["true_s"] / called if called else None,
        "sveb_ppv_without_s_calls_in_af": (total["true_s"] - total["true_s_in_af"]) / kept
        if kept
        else None,
        "records": rows,
    }
    print(json.dumps(result, indent=1))
    if args.record:
        registry.record(args.record, result, sys.argv)


if __name__ == "__main__":
    main()
