"""``medchain evaluate --task rhythm --records DIR --labels CSV``: score a rhythm model on any
folder of recordings, through the edge's own verdict code.

Every labelled recording (``models.rhythm_records``) goes through
``edge_agent.rhythm_verdict.recording_verdict`` with the ``edge_agent.rhythm.OnnxRhythmScorer``
of the model, exactly as a device's spot check: quality checks, windows of at most 30 s,
``common.signals.rhythm_input.prepare_rhythm_input``, mean probabilities, arg-max. A recording no
model decides on (under 9 s, a flat line) counts as predicted ``noisy`` and is flagged. The JSON
(:data:`SCHEMA`, documented in docs/models.md) is what outside evaluators read: keep it stable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ConfigError, DataNotFoundError
from common.signals.rhythm_input import QUALITY_FLAGS
from common.types import StreamKind, rate_problem
from models.rhythm_metrics import CLASSES, SCORED, rhythm_metrics
from models.rhythm_records import find_file, read_labels, read_recording

_LOGGER = logging.getLogger(__name__)

SCHEMA = "medchain.evaluate.rhythm/1"
DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "rhythm.onnx"


def evaluate_records(
    records_dir: Path,
    labels: Path,
    model: Path = DEFAULT_MODEL,
    *,
    fs: float | None = None,
    lead: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The :data:`SCHEMA` report of ``model`` on the labelled recordings of ``records_dir``.

    Raises
    ------
    DataNotFoundError, CorruptInputError
        Missing folder/model/recording, a bad labels row, an unreadable recording: one line.
    """
    from edge_agent.rhythm import OnnxRhythmScorer
    from edge_agent.rhythm_verdict import recording_verdict

    if not records_dir.is_dir():
        raise DataNotFoundError(f"records folder {records_dir.name!r}", str(records_dir.parent))
    rows = read_labels(labels)
    scorer = OnnxRhythmScorer(model)
    per_record: list[dict[str, Any]] = []
    for k, (name, label) in enumerate(rows):
        rec = read_recording(find_file(records_dir, name), fs=fs, lead=lead)
        verdict = recording_verdict(rec.signal_uv, rec.fs, scorer)
        per_record.append(
            {"record": name, "label": label, "predicted": verdict.label, "fs_hz": rec.fs}
            | verdict.to_json()
        )
        if k % 500 == 499:
            _LOGGER.info("%d of %d recordings scored", k + 1, len(rows))
    y = np.array([CLASSES.index(r["label"]) for r in per_record], dtype=np.int64)
    p = np.array([CLASSES.index(r["predicted"]) for r in per_record], dtype=np.int64)
    metrics = rhythm_metrics(y, p, bootstrap=bootstrap, seed=seed)
    blob = model.read_bytes()
    return {
        "schema": SCHEMA,
        "task": "rhythm",
        "model": {
            "path": str(model),
            "version": scorer.version,
            "classes": list(scorer.classes),
            "sha256": hashlib.sha256(blob).hexdigest(),
        },
        "records_dir": str(records_dir),
        "labels": str(labels),
        "classes": list(CLASSES),
        "scored_classes": list(SCORED),
        "n_records": len(per_record),
        "cinc_mean_f1": metrics["cinc_mean_f1"],
        "af_f1": metrics["af_f1"],
        "accuracy": metrics["accuracy"],
        "per_class": metrics["per_class"],
        "confusion": {
            "rows": "reference",
            "columns": "predicted",
            "classes": list(CLASSES),
            "matrix": metrics["confusion"],
        },
        "bootstrap": metrics.get("bootstrap"),
        "quality": _quality_counts(per_record),
        "records": per_record,
    }


def _quality_counts(per_record: list[dict[str, Any]]) -> dict[str, int]:
    counts = {f: sum(f in r["quality"] for r in per_record) for f in QUALITY_FLAGS}
    return counts | {"undecided": sum(not r["decided"] for r in per_record)}


def summary_text(report: Mapping[str, Any]) -> str:
    """A few human lines: the score with its interval, per-class F1, the confusion matrix."""
    ci = (report.get("bootstrap") or {}).get("ci", {}).get("cinc_mean_f1")
    lines = [
        f"rhythm on {report['n_records']} recordings ({report['model']['version']}): CinC mean F1 "
        f"(N, AF, O) {report['cinc_mean_f1']:.3f}"
        + (f" [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""),
        "F1 "
        + "  ".join(f"{c} {(report['per_class'][c]['f1'] or 0):.3f}" for c in report["classes"]),
        "confusion (rows reference, columns predicted " + " ".join(report["classes"]) + "):",
    ]
    lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in report["confusion"]["matrix"]]
    flagged = {k: v for k, v in report["quality"].items() if v}
    if flagged:
        lines.append("quality: " + ", ".join(f"{k} {v}" for k, v in flagged.items()))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rhythm record-folder options of ``medchain evaluate`` (``--bootstrap`` and
    ``--lead`` are shared with the beat task's record options)."""
    parser.add_argument(
        "--labels",
        type=Path,
        help="rhythm: 'record,label' file for --records DIR (CinC's REFERENCE.csv works as is)",
    )
    parser.add_argument(
        "--fs",
        type=float,
        help="rhythm: sampling rate (Hz) of recordings without one (.mat: default 300, CinC 2017; "
        ".csv without a time column)",
    )


def run_rhythm_records(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``medchain evaluate --task rhythm --records DIR --labels CSV [--model M] [--json]``."""
    del env
    if not args.records:
        raise ConfigError("--labels needs --records DIR (the folder of the recordings)")
    if args.fs is not None and (problem := rate_problem(StreamKind.ECG, args.fs)):
        raise ConfigError(f"--fs: {problem}")  # the ECG range the edge and replays hold
    lead = args.lead.split(",")[0].strip() if getattr(args, "lead", None) else None
    report = evaluate_records(
        Path(args.records),
        Path(args.labels),
        Path(args.model) if args.model else DEFAULT_MODEL,
        fs=args.fs,
        lead=lead,
        bootstrap=getattr(args, "bootstrap", 1000),
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(summary_text(report))
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rhythm_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"report: {out / 'rhythm_report.json'}", file=sys.stderr)
    return 0
