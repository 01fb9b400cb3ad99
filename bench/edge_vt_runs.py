"""Run-level check of the edge agent's ventricular-tachycardia alarms (``vt_run``) on MIT-BIH DS2.

Each record (MLII) is replayed through the offline edge agent (``bench.edge_common.run_record``)
once per model. Reference runs are maximal runs of >= 3 consecutive annotated V beats (AAMI
class V, among the AAMI-mappable beat annotations of ``models.data.mitdb.read_record``), spanning
[first V sample, last V sample] / fs. Detected runs are the agent's ``vt_run`` events, placed in
record time through the detected beat whose ``t_ns`` starts / ends the event (its ``sample`` is
the index in the record; the replay's wall-clock ``t0`` cancels out).

- an annotated run is *caught* if some ``vt_run`` event overlaps its span widened by
  ``--tolerance-s`` (1 s) on each side;
- an event is a *false alarm* if it overlaps no widened annotated run of >= 3 V; false alarms
  that overlap a widened annotated couplet (exactly 2 consecutive V) are counted separately
  (``false_alarms_on_couplet``), as they sit on real ventricular ectopy.

Usage:
  MEDCHAIN_DATA=/path/to/data python bench/edge_vt_runs.py \\
      --model before=OLD/beat.onnx --model after=models/pretrained/beat.onnx [--records 200,213]

Prints JSON: per model, totals and per-record counts, plus the records where models differ.
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
from bench.edge_common import run_record  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from common.types import BeatPrediction, Event  # noqa: E402
from models.data.mitdb import DS2, read_record  # noqa: E402

V_CLASS = 2  # AAMI class index of V in models.data.mitdb
Span = tuple[float, float]


def annotated_runs(
    samples: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], fs: float
) -> tuple[list[Span], list[Span]]:
    """(runs of >= 3 consecutive V, couplets of exactly 2 V) as [first, last] V time in s."""
    runs: list[Span] = []
    couplets: list[Span] = []
    i, n = 0, labels.size
    while i < n:
        if labels[i] != V_CLASS:
            i += 1
            continue
        j = i
        while j + 1 < n and labels[j + 1] == V_CLASS:
            j += 1
        span = (float(samples[i]) / fs, float(samples[j]) / fs)
        if j - i + 1 >= 3:
            runs.append(span)
        elif j - i + 1 == 2:
            couplets.append(span)
        i = j + 1
    return runs, couplets


def event_spans(beats: list[BeatPrediction], events: list[Event], fs: float) -> list[Span]:
    """``vt_run`` events as [start, end] s in record time (via their first / last beat)."""
    sample_of = {b.t_ns: b.sample for b in beats}
    out: list[Span] = []
    for e in events:
        if e.kind != "vt_run":
            continue
        out.append((sample_of[e.t_start_ns] / fs, sample_of[e.t_end_ns] / fs))
    return sorted(out)


def _overlaps(a: Span, b: Span, tol: float) -> bool:
    return a[0] <= b[1] + tol and b[0] - tol <= a[1]


def score(runs: list[Span], couplets: list[Span], events: list[Span], tol: float) -> dict[str, Any]:
    caught = sum(any(_overlaps(e, r, tol) for e in events) for r in runs)
    false = [e for e in events if not any(_overlaps(e, r, tol) for r in runs)]
    on_couplet = sum(any(_overlaps(e, c, tol) for c in couplets) for e in false)
    return {
        "annotated_runs": len(runs),
        "caught": caught,
        "events": len(events),
        "false_alarms": len(false),
        "false_alarms_on_couplet": on_couplet,
        "false_alarm_spans_s": [[round(a, 2), round(b, 2)] for a, b in false],
    }


COUNTS = ("annotated_runs", "caught", "events", "false_alarms", "false_alarms_on_couplet")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="beat model to compare (repeatable)",
    )
    ap.add_argument("--records", default=",".join(DS2), help="comma list (default: DS2)")
    ap.add_argument("--tolerance-s", type=float, default=1.0, help="widening of runs, s")
    registry.add_record_argument(ap, "edge_vt_runs")
    args = ap.parse_args()
    models: dict[str, Path] = {}
    for m in args.model:
        label, sep, path = m.partition("=")
        if not sep or not label or not path:
            ap.error(f"--model expects LABEL=PATH, got {m!r}")
        models[label] = Path(path)
    root = dataset_dir("mitdb", os.environ)
    records = [r for r in args.records.split(",") if r]
    refs = {}
    for rec in records:
        r = read_record(root, rec)
        refs[rec] = annotated_runs(r.beat_samples, r.beat_labels, r.fs)
    result: dict[str, Any] = {
        "bench": "edge_vt_runs",
        "records": records,
        "tolerance_s": args.tolerance_s,
        "models": {},
    }
    for label, path in models.items():
        per_record: dict[str, dict[str, Any]] = {}
        for rec in records:
            run = run_record(root / rec, path)
            spans = event_spans(run.beat_predictions, run.event_list, run.fs)
            runs, couplets = refs[rec]
            per_record[rec] = score(runs, couplets, spans, args.tolerance_s)
            print(f"{label} {rec}: {json.dumps(per_record[rec])}", file=sys.stderr)
        totals = {k: sum(int(p[k]) for p in per_record.values()) for k in COUNTS}
        result["models"][label] = {"path": str(path), "totals": totals, "per_record": per_record}
    labels = list(models)
    result["records_differing"] = [
        rec
        for rec in records
        if len({tuple(result["models"][m]["per_record"][rec][k] for k in COUNTS) for m in labels})
        > 1
    ]
    print(json.dumps(result, indent=1))
    if args.record:
        registry.record(args.record, result, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
