"""Patient-wise cross-validation on DS1 (hyper-parameter selection without touching DS2).

DS1's 22 records are split into ``--folds`` groups of patients; a net is trained on the others
and predicts the held-out patients; the pooled confusion matrix over all folds gives Se/+P,
macro-F1 and the jk index. Prints one JSON line.

    python bench/models_cv.py --net student --set balance=0.6 --set epochs=8
    python bench/models_cv.py --kd --netset kind=cnn_rr --teacherset kind=resnet_rr
    python bench/models_cv.py --gate --netset kind=cnn_rr --set balance=0.8 \
        --set aux_channel_swap=0.5 --set aux_swap_features=[4,6] --set aux_swap_below=0.8

``--gate`` also scores the net followed by the RR gate (``models/rr_gate.py``) fitted on the
training folds, as ``medchain train`` ships it; ``--two-view`` scores N vs S with the template
channel zeroed (see ``_two_view``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.datasets import default_cache_dir
from common.signals import BeatSpec
from models.data.mitdb import DS1
from models.distill import distill
from models.export import export_onnx, save_checkpoint, save_head
from models.metrics import classification_metrics, jk_index
from models.nets import build_net
from models.pipeline import check_parity
from models.rr_gate import fit_rr_gate
from models.tasks import LoadOptions, get_task
from models.tasks.base import NetSpec, TaskData, TrainSpec
from models.tasks.beat import BEAT_SPEC, load_records
from models.train import fit, predict_logits, seed_everything

FOLDS = [  # fixed, spreading the S/V/F-rich records (209, 207, 208, 201, 118, 220, 223)
    ["101", "106", "112", "118", "201", "215", "223", "230"],
    ["108", "114", "115", "122", "203", "207", "209"],
    ["109", "116", "119", "124", "205", "208", "220"],
]


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _by_record(
    y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], groups: np.ndarray[Any, Any], cls: int
) -> dict[str, list[int]]:
    """``record: [found, present, false calls]`` of class ``cls`` for records with any such beat
    or call (1 = S, 2 = V)."""
    out = {}
    for rec in np.unique(groups):
        g = groups == rec
        hit, true = (g & (y == cls) & (p == cls)), (g & (y == cls))
        false = g & (y != cls) & (p == cls)
        if true.any() or false.any():
            out[str(rec)] = [int(hit.sum()), int(true.sum()), int(false.sum())]
    return out


def _scores(
    y: np.ndarray[Any, Any],
    p: np.ndarray[Any, Any],
    groups: np.ndarray[Any, Any],
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """jk, macro-F1, per-class Se/+P, confusion and per-record SVEB and VEB counts."""
    m = classification_metrics(y, p, classes)
    m.update(jk_index(np.asarray(m["confusion"]), classes))
    return {
        "jk": round(m["jk"], 3),
        "macro_f1": round(m["macro_f1"], 3),
        "se_ppv": {
            c: [round(v["se"] or 0, 3), round(v["ppv"] or 0, 3)] for c, v in m["per_class"].items()
        },
        "confusion": m["confusion"],
        "sveb_by_record": _by_record(y, p, groups, 1),
        "veb_by_record": _by_record(y, p, groups, 2),
    }


def _two_view(net: torch.nn.Module, test: TaskData) -> np.ndarray[Any, Any]:
    """Classes of ``test``: V/F/Q from the full input, N vs S from the input without channels 1:.

    Measures the "two-view" inference of a net trained with aux-channel dropout: the template
    channel keeps bundle-branch-block N beats from being called V, while N vs S (where an
    ectopic template misleads, MIT-BIH 232) is decided by the beat and its RR features alone.
    """
    full = predict_logits(net, test)
    zeroed = test.signal.copy()
    zeroed[:, 1:] = 0.0
    blind = predict_logits(net, replace(test, signal=zeroed))
    pred = full.argmax(axis=1)
    ns = pred <= 1  # classes 0 = N, 1 = S
    pred[ns] = (blind[ns, 1] > blind[ns, 0]).astype(pred.dtype)
    return pred  # type: ignore[no-any-return]


class _Ensemble(torch.nn.Module):
    """Teachers averaged in probability; ``forward`` returns log(mean softmax) as the logits
    (what ``models.distill`` softens by its temperature) and no embedding."""

    def __init__(self, nets: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, signal: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs = torch.stack([torch.softmax(n(signal, feats)[0], dim=1) for n in self.nets])
        return torch.log(probs.mean(dim=0).clamp_min(1e-12)), None


def train_fold(
    train: TaskData,
    net_spec: NetSpec,
    spec: TrainSpec,
    seed: int,
    teacher: NetSpec | None,
    n_teachers: int = 1,
) -> torch.nn.Module:
    """The student of one CV fold: trained directly, or (``teacher`` given) distilled from a
    teacher trained first, with the pipeline's seeds (teacher ``seed``, student ``seed + 1``).
    ``n_teachers > 1`` distils from the probability average of that many teachers (seeds
    ``seed``, ``seed + 1000``, ...)."""
    _, channels, length = train.signal.shape
    n_feat = train.features.shape[1]
    if teacher is None:
        net = build_net(net_spec, channels, length, n_feat, 5)
        fit(net, train, spec, seed=seed, n_classes=5)
        return net
    teachers = []
    for i in range(n_teachers):
        torch.manual_seed(seed + 1000 * i)
        t_net = build_net(teacher, channels, length, n_feat, 5)
        fit(t_net, train, spec, seed=seed + 1000 * i, n_classes=5)
        teachers.append(t_net.eval())
    torch.manual_seed(seed + 1)
    net = build_net(net_spec, channels, length, n_feat, 5)
    t_all = teachers[0] if n_teachers == 1 else _Ensemble(teachers).eval()
    distill(net, train, spec, teacher=t_all, seed=seed + 1)
    return net


def _final(out: Path, data: TaskData, net_spec: NetSpec, spec: TrainSpec, seed: int) -> None:
    """Train on all of ``data`` exactly as one CV fold does and export it (no DS2 involved)."""
    task = get_task("beat")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    _, channels, length = data.signal.shape
    net = build_net(net_spec, channels, length, data.features.shape[1], 5)
    fit(net, data, spec, seed=seed, n_classes=5)
    meta = {
        "task": task.name,
        "net_spec": asdict(net_spec),
        "in_channels": channels,
        "length": length,
        "n_features": net.n_features,
        "n_classes": 5,
        "classes": list(task.classes),
    }
    save_checkpoint(net, out / "student.pt", meta)
    export_onnx(net, out / "beat_fp32.onnx", task.input_names)
    save_head(net, out / "beat.head.npz")
    parity = check_parity(net, out / "beat_fp32.onnx", data)
    print(json.dumps({"final": str(out), "parity_max_abs": parity, "train_spec": asdict(spec)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--net", choices=["student", "teacher"], default="student")
    parser.add_argument("--set", action="append", default=[], help="TrainSpec field=value")
    parser.add_argument("--spec", action="append", default=[], help="BeatSpec field=value")
    parser.add_argument("--netset", action="append", default=[], help="NetSpec field=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--kd",
        action="store_true",
        help="as `medchain train`: train the teacher, then distil the student from it",
    )
    parser.add_argument(
        "--two-view",
        action="store_true",
        help="predict N vs S with channels 1: zeroed, V/F/Q with all channels (see _two_view)",
    )
    parser.add_argument(
        "--gate",
        action="store_true",
        help="also report the net followed by the RR gate fitted on the training folds "
        "(models/rr_gate.py, S vs the rest, as `medchain train` ships it)",
    )
    parser.add_argument("--teacherset", action="append", default=[], help="teacher NetSpec k=v")
    parser.add_argument(
        "--teachers", type=int, default=1, help="with --kd: distil from an average of N teachers"
    )
    parser.add_argument(
        "--final",
        type=Path,
        help="skip CV: train the configuration on all of DS1 (seeded before init) and write "
        "student.pt, beat_fp32.onnx, beat.head.npz here (then `medchain quantize`)",
    )
    args = parser.parse_args()
    if args.teachers < 1 or (args.teachers > 1 and not args.kd):
        parser.error("--teachers N needs N >= 1, and N > 1 needs --kd")
    torch.set_num_threads(args.threads)
    task = get_task("beat")
    spec = replace(task.train, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    beat_spec: BeatSpec = replace(
        BEAT_SPEC, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.spec)}
    )
    net_spec = getattr(task, args.net)
    if args.netset:
        kv = {k: _value(v) for k, v in (s.split("=", 1) for s in args.netset)}
        if "widths" in kv:
            kv["widths"] = tuple(kv["widths"])
        net_spec = replace(net_spec, **kv)
    teacher_spec = task.teacher
    if args.teacherset:
        teacher_spec = replace(
            teacher_spec, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.teacherset)}
        )
    opts = LoadOptions(env=os.environ, cache_dir=default_cache_dir(os.environ) / "preprocessed")
    data = load_records(list(DS1), opts, beat_spec)
    if args.final is not None:
        _final(args.final, data, net_spec, spec, args.seed)
        return
    started = time.monotonic()
    labels, preds, records, gated = [], [], [], []
    for fold in FOLDS:
        held = np.isin(data.groups, fold)
        train, test = data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))
        net = train_fold(
            train, net_spec, spec, args.seed, teacher_spec if args.kd else None, args.teachers
        )
        logits = predict_logits(net, test)
        preds.append(_two_view(net, test) if args.two_view else logits.argmax(axis=1))
        labels.append(test.labels)
        records.append(test.groups)
        if args.gate:
            gate = fit_rr_gate(train.features, train.labels, 0, 1)  # N = 0, S = 1
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            gated.append(gate.apply(probs / probs.sum(axis=1, keepdims=True), test.features))
    y, groups = np.concatenate(labels), np.concatenate(records)
    out = {
        "net": args.net,
        "set": args.set,
        "spec": args.spec,
        "netset": args.netset,
        "kd": args.kd,
        "two_view": args.two_view,
        "teacherset": args.teacherset,
        "teachers": args.teachers,
        "seconds": round(time.monotonic() - started),
    } | _scores(y, np.concatenate(preds), groups, task.classes)
    if gated:
        out["gate"] = _scores(y, np.concatenate(gated).argmax(axis=1), groups, task.classes)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
