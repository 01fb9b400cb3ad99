"""End-to-end beat classification from raw signal on MIT-BIH DS2 (detected beats, not
annotation positions), compared with the model's own evaluation on annotated beats.

Each DS2 record (MLII) is replayed through the offline edge agent (causal filter, streaming
QRS detector, beat windows + RR features per the card, int8 ONNX). Detected beats are matched
one to one to annotated beats within 150 ms (EC57 bxb); the confusion matrix of the matched
pairs gives per-class Se/+P and macro-F1 (classes with support), the same definition as
``medchain evaluate``. ``strict`` also counts missed annotated beats as errors (predicted
"missed") and reports detection Se/+P.

Usage: python bench/edge_beat_e2e.py [--model PATH] [--records 100,103] [--evaluate]
(--evaluate also runs ``medchain evaluate --task beat --split ds2 --json`` for the reference).
Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_common import run_record  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from common.model_card import card_path_for, load_card  # noqa: E402
from common.signals.ecg import ecg_beats  # noqa: E402
from common.signals.matching import match_peaks  # noqa: E402
from edge_agent.annotations import AAMI  # noqa: E402
from edge_agent.app import DEFAULT_MODEL, beat_spec_from_card, channels_from_card  # noqa: E402
from edge_agent.featurize import TemplateTracker  # noqa: E402
from edge_agent.inference import OnnxBeatClassifier  # noqa: E402
from models.data.mitdb import DS2  # noqa: E402

CLASSES = ("N", "S", "V", "F", "Q")


def metrics(cm: np.ndarray) -> dict[str, object]:
    per = {}
    f1s = []
    for i, c in enumerate(CLASSES):
        tp, sup, pred = float(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        f1 = 2 * tp / (sup + pred) if sup + pred else None
        per[c] = {
            "se": tp / sup if sup else None,
            "ppv": tp / pred if pred else None,
            "f1": f1,
            "support": sup,
        }
        if sup:
            f1s.append(f1 or 0.0)
    total = int(cm.sum())
    return {
        "macro_f1": float(np.mean(f1s)),
        "accuracy": float(np.trace(cm) / total),
        "n": total,
        "per_class": per,
        "confusion": cm.tolist(),
    }


def run_signal(path: Path) -> np.ndarray:
    """The record's MLII lead in µV (the annotated-beat reference reads it whole)."""
    import wfdb

    rec = wfdb.rdrecord(str(path), channel_names=["MLII"])
    return np.asarray(rec.p_signal[:, 0] * 1000.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--records", default=",".join(DS2))
    ap.add_argument("--evaluate", action="store_true", help="also run medchain evaluate")
    ap.add_argument(
        "--align-window-s", type=float, help="override the card's beat_spec.align_window_s"
    )
    args = ap.parse_args()
    root = dataset_dir("mitdb", os.environ)
    idx = {c: i for i, c in enumerate(CLASSES)}
    cm = np.zeros((5, 5), np.int64)
    tp = fp = fn = 0
    missed = np.zeros(5, np.int64)
    per_record = {}
    clf = OnnxBeatClassifier(args.model)
    spec = beat_spec_from_card(clf.card)
    if args.align_window_s is not None:
        spec = dataclasses.replace(spec, align_window_s=args.align_window_s)
    channels, template_beats = channels_from_card(clf.card)
    cm_ann = np.zeros((5, 5), np.int64)  # the same model on annotated positions, whole record
    for rec in args.records.split(","):
        run = run_record(root / rec, args.model, spec=spec)
        pos, sym = run.annotations
        keep = [i for i, s in enumerate(sym) if s in AAMI]
        ref = pos[keep]
        ref_cls = np.array([idx[AAMI[sym[i]]] for i in keep])
        m = match_peaks(run.samples, ref, round(0.15 * run.fs))
        pred = np.array([idx[lab] for lab in run.labels])
        np.add.at(cm, (ref_cls[m.matched_reference], pred[m.matched_detected]), 1)
        ann_in = ecg_beats(run_signal(root / rec), run.fs, ref, spec)
        w_ann = ann_in.windows
        if len(channels) > 1:  # the running-median template channel, as in training
            w_ann = np.stack([w_ann, TemplateTracker(template_beats).push(w_ann)], axis=1)
        p_ann = clf.predict(w_ann.astype(np.float32), ann_in.rr.astype(np.float32))
        np.add.at(cm_ann, (ref_cls, p_ann.argmax(axis=1)), 1)
        unmatched = np.setdiff1d(np.arange(ref.size), m.matched_reference)
        np.add.at(missed, ref_cls[unmatched], 1)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        per_record[rec] = {
            "se": m.sensitivity,
            "ppv": m.positive_predictivity,
            "beats": int(ref.size),
            "events": run.events,
        }
        print(f"{rec}: Se {m.sensitivity:.4f} +P {m.positive_predictivity:.4f}", file=sys.stderr)
    card = load_card(card_path_for(args.model))
    ref_f1 = card.metrics.get("int8", {}).get("macro_f1")
    result: dict[str, object] = {
        "bench": "edge_beat_e2e",
        "model": str(args.model),
        "model_sha256": card.artifact.sha256,
        "records": args.records.split(","),
        "tolerance_ms": 150,
        "detection": {"tp": tp, "fp": fp, "fn": fn, "se": tp / (tp + fn), "ppv": tp / (tp + fp)},
        "matched": metrics(cm),
        "missed_by_class": dict(zip(CLASSES, missed.tolist(), strict=True)),
        "annotated_same_spec": metrics(cm_ann),
        "delta_vs_annotated_points": 100 * (metrics(cm)["macro_f1"] - metrics(cm_ann)["macro_f1"]),  # type: ignore[operator]
        "beat_spec": spec.to_dict(),
        "card_int8_macro_f1_ds2": ref_f1,
        "per_record": per_record,
    }
    # strict: missed annotated beats count as wrong (their row total grows, no true positive)
    strict_f1 = []
    for i in range(5):
        sup = int(cm[i].sum() + missed[i])
        pred_n = int(cm[:, i].sum())
        if sup:
            strict_f1.append(2 * cm[i, i] / (sup + pred_n))
    result["strict_macro_f1"] = float(np.mean(strict_f1))
    if args.evaluate:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "medchain",
                "evaluate",
                "--task",
                "beat",
                "--model",
                str(args.model),
                "--split",
                "ds2",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            result["evaluate"] = json.loads(out.stdout)
        except json.JSONDecodeError:
            result["evaluate_error"] = out.stderr[-2000:]
    ref = result.get("evaluate", {})
    ref_macro = ref.get("macro_f1") if isinstance(ref, dict) else None
    ref_macro = ref_macro if ref_macro is not None else ref_f1
    if ref_macro is not None:
        result["delta_points"] = 100 * (result["matched"]["macro_f1"] - ref_macro)  # type: ignore[index]
        result["within_1_point"] = abs(result["delta_points"]) <= 1.0  # type: ignore[arg-type]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
