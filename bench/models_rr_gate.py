"""DS1 patient-wise CV of the RR gate (models/rr_gate.py) and the template veto
(models/template_veto.py): the student with and without them.

Each fold trains the beat student on two thirds of DS1's patients (as ``models.beat_cv``:
cross-entropy, or teacher + KD with ``--kd``), fits the gate's logistic regression on the same
patients' RR features, and predicts the held-out third. Pooled over the folds: per-class Se/+P,
macro-F1 and jk for the net alone, for each gate variant, and for the shipped gate followed by
the template veto at each threshold of :data:`VETO_GRID` (``veto``). DS2 is not touched.

    python bench/models_rr_gate.py --kd --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import default_cache_dir  # noqa: E402
from models.beat_cv import FOLDS, CvConfig, train_fold  # noqa: E402
from models.beat_cv import scores as _scores  # noqa: E402
from models.data.mitdb import DS1  # noqa: E402
from models.rr_gate import fit_rr_gate  # noqa: E402
from models.tasks import LoadOptions, get_task  # noqa: E402
from models.tasks.beat import BEAT_SPEC, load_records  # noqa: E402
from models.template_veto import TemplateVeto  # noqa: E402
from models.train import predict_logits  # noqa: E402

# fit_rr_gate options per variant (S split fitted on all beats or N/S only; V expert or not)
VARIANTS: dict[str, dict[str, Any]] = {
    "gate_all": {"ns_only": False},
    "gate_ns": {"ns_only": True},
    "gate_all_v": {"ns_only": False, "v_index": 2},
}


VETO_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # channel-1 RMS thresholds (z-score units)


def veto_scores(
    gated: np.ndarray[Any, Any],
    signal: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    groups: np.ndarray[Any, Any],
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """``{threshold: scores}`` of the gated probabilities followed by the template veto."""
    v, q = classes.index("V"), classes.index("Q")
    return {
        str(t): _scores(
            labels, TemplateVeto(t, v, q).apply(gated, signal).argmax(1), groups, classes
        )
        for t in VETO_GRID
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kd", action="store_true", help="teacher + KD student, as shipped")
    parser.add_argument(
        "--save",
        type=Path,
        help="write the pooled CV probs (net and each gate), labels, rr, groups and each "
        "beat's index in DS1 as loaded (npz)",
    )
    registry.add_record_argument(parser, "models_rr_gate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("beat")
    n_idx, s_idx = task.classes.index("N"), task.classes.index("S")
    opts = LoadOptions(env=os.environ, cache_dir=default_cache_dir(os.environ) / "preprocessed")
    data = load_records(list(DS1), opts, BEAT_SPEC)
    started = time.monotonic()
    labels, probs, rr, groups, index, signal = [], [], [], [], [], []
    gated: dict[str, list[np.ndarray[Any, Any]]] = {k: [] for k in VARIANTS}
    for fold in FOLDS:
        held = np.isin(data.groups, fold)
        train, test = data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))
        teacher = task.teacher if args.kd else None
        net = train_fold(train, CvConfig(task.student, task.train, args.seed, teacher))
        logits = predict_logits(net, test)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        pr = e / e.sum(axis=1, keepdims=True)
        for name, options in VARIANTS.items():
            gate = fit_rr_gate(train.features, train.labels, n_idx, s_idx, **options)
            gated[name].append(gate.apply(pr, test.features))
        labels.append(test.labels)
        probs.append(pr)
        rr.append(test.features)
        groups.append(test.groups)
        index.append(np.flatnonzero(held))
        signal.append(test.signal)
    y, g = np.concatenate(labels), np.concatenate(groups)
    out: dict[str, Any] = {
        "kd": args.kd,
        "seed": args.seed,
        "seconds": round(time.monotonic() - started),
        "net": _scores(y, np.concatenate(probs).argmax(axis=1), g, task.classes),
    }
    for name in VARIANTS:
        out[name] = _scores(y, np.concatenate(gated[name]).argmax(axis=1), g, task.classes)
    out["veto"] = veto_scores(
        np.concatenate(gated["gate_all"]), np.concatenate(signal), y, g, task.classes
    )
    print(json.dumps(out))
    if args.record:
        registry.record(args.record, out, sys.argv)
    if args.save is not None:
        np.savez_compressed(
            args.save,
            probs=np.concatenate(probs),
            labels=y,
            rr=np.concatenate(rr),
            groups=g,
            index=np.concatenate(index),
            **{f"probs_{name}": np.concatenate(gated[name]) for name in VARIANTS},
        )


if __name__ == "__main__":
    main()
