"""Activity recognition on HMP (14 wrist ADL), leave-one-volunteer-out, as JSON.

Run: ``/work/venv/bin/python bench/activity.py`` — accuracy, macro-F1 and per-class Se/+P/F1,
per 4 s window and per trial (mean of the trial's window probabilities).
"""

from __future__ import annotations

import os

# One BLAS thread: the small L-BFGS fits are ~8x slower with oversubscribed threads on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.signals.accel import ACC_FEATURE_NAMES  # noqa: E402
from models.tasks.activity import evaluate_lovo  # noqa: E402
from models.tasks.base import LoadOptions  # noqa: E402


def _short(m: dict) -> dict:
    return {
        "accuracy": round(m["accuracy"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "n": m["n"],
        "per_class": {
            c: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}
            for c, d in m["per_class"].items()
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    registry.add_record_argument(ap, "activity")
    args = ap.parse_args()
    res = evaluate_lovo(LoadOptions(env=dict(os.environ)))
    out = {
        "protocol": "leave-one-volunteer-out, 16 volunteers, 14 classes, softmax over acc_features",
        "n_features": len(ACC_FEATURE_NAMES),
        "per_window": _short(res["per_window"]),
        "per_trial": _short(res["per_trial"]),
    }
    print(json.dumps(out, indent=2))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
