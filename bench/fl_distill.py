"""Server-side distillation of the federated global model into a new int8 student: time,
student/teacher agreement, and DS2 metrics of teacher (global int8 model) vs distilled int8
student. The transfer set is DS1 (``--transfer``). Prints JSON.

    python bench/fl_distill.py [--global-head head.npz] [--epochs 2 --steps 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fl_data import CLASSES, DEFAULT_MODEL  # noqa: E402
from cloud_aggregator.distillation import DistillSettings, distill_release, teacher_probs  # noqa: E402
from cloud_aggregator.evaluation import fit_channels, input_channels, summary_metrics  # noqa: E402
from cloud_aggregator.releases import next_release, release_from_model_dir  # noqa: E402
from common.datasets import default_cache_dir  # noqa: E402
from models.tasks import get_task  # noqa: E402
from models.tasks.base import LoadOptions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--global-head", type=Path)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    env = dict(os.environ)
    task = get_task("beat")
    opts = LoadOptions(env=env, cache_dir=default_cache_dir(env) / "beat-cache")
    transfer, test = task.load("ds1", opts), task.load("ds2", opts)
    base = release_from_model_dir(args.model)
    rel = base
    if args.global_head:
        with np.load(args.global_head) as z:
            rel = next_release(base, {"head.weight": z["W"], "head.bias": z["b"]}, 1, {})
    ch = input_channels(rel.files["model.onnx"])
    teacher_transfer = dataclasses.replace(transfer, signal=fit_channels(transfer.signal, ch))
    t0 = time.perf_counter()
    out = distill_release(
        rel, teacher_transfer, task, DistillSettings(epochs=args.epochs, steps_per_epoch=args.steps)
    )
    seconds = time.perf_counter() - t0

    def ds2(onnx_bytes: bytes) -> dict[str, float]:
        c = input_channels(onnx_bytes)
        p = teacher_probs(onnx_bytes, {"beat": fit_channels(test.signal, c), "rr": test.features})
        m = summary_metrics(test.labels, p.argmax(1).astype(np.int64), CLASSES)
        return {
            k: round(v, 4)
            for k, v in m.items()
            if k in ("macro_f1", "accuracy", "se_S", "ppv_S", "se_V", "ppv_V")
        }

    print(
        json.dumps(
            {
                "benchmark": "fl_distill",
                "transfer": "ds1",
                "epochs": args.epochs,
                "steps_per_epoch": args.steps,
                "seconds": round(seconds, 1),
                "student_teacher_agreement_transfer": round(out.metrics["distill_fidelity"], 4),
                "student_int8_bytes": len(out.files["model.onnx"]),
                "ds2_teacher_global_int8": ds2(rel.files["model.onnx"]),
                "ds2_distilled_student_int8": ds2(out.files["model.onnx"]),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
