"""One command from data to a shipped model: teacher -> KD student -> ONNX -> int8 -> card.

``train_task`` writes into ``out_dir``::

    teacher.pt            fp32 teacher checkpoint (not for git)
    student.pt            fp32 student checkpoint
    <task>_fp32.onnx      fp32 student ONNX (probs + embedding)
    <task>.onnx           int8 static-QDQ student (head fp32)   <- the shipped model
                          (tasks with N and S classes and an ``rr`` input: + the RR gate,
                          models/rr_gate.py, in both ONNX files)
    <task>.head.npz       head weights W (C, E), b (C,)
    <task>.card.json      model card (contract, metrics fp32/int8/teacher, sha256, command)
    metrics.json          every evaluation, plus training history
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.cards import build_card
from models.distill import distill
from models.evaluate import metrics_from_probs
from models.export import export_onnx, save_checkpoint, save_head
from models.nets import SignalNet, build_net, count_parameters
from models.predict import onnx_predictor
from models.quantize import calibration_inputs, quantize
from models.rr_gate import RRGate, add_rr_gate_to_onnx, fit_rr_gate
from models.tasks.base import (
    LoadOptions,
    NetSpec,
    Task,
    TaskData,
    TrainSpec,
    require_labels,
)
from models.template_veto import TemplateVeto, add_template_veto_to_onnx
from models.train import EpochCallback, fit, predict_logits, seed_everything

_LOGGER = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # max |probs_torch - probs_onnx| of the fp32 export


@dataclass(frozen=True)
class TrainRequest:
    """What ``train_task`` should do (CLI flags map 1:1)."""

    seed: int = 0
    out_dir: Path = Path("runs/beat")
    records: tuple[str, ...] | None = None  # train-split records (smoke runs)
    test_records: tuple[str, ...] | None = None
    epochs: int | None = None  # overrides TrainSpec.epochs for teacher and student
    steps_per_epoch: int | None = None
    holdout: bool = False  # hold out a patient-wise validation split and report it
    calibration_per_class: int = 200
    command: str = ""
    threads: int = 2
    rr_gate: bool = True  # where the task allows it (see gate_for)
    template_veto: bool = True  # where the task has one (see veto_for)
    views: bool = True  # the task's augmented training views, if it has them (see with_views)


def _softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _net(task: Task, spec: NetSpec, data: TaskData) -> SignalNet:
    _, channels, length = data.signal.shape
    return build_net(spec, channels, length, data.features.shape[1], len(task.classes))


def _meta(task: Task, spec: NetSpec, net: SignalNet) -> dict[str, Any]:
    return {
        "task": task.name,
        "net_spec": asdict(spec),
        "in_channels": net.in_channels,
        "length": net.length,
        "n_features": net.n_features,
        "n_classes": net.n_classes,
        "classes": list(task.classes),
    }


def _validator(task: Task, val: TaskData | None) -> Callable[[Any], dict[str, Any]] | None:
    if val is None or len(val) == 0:
        return None

    def validate(net: Any) -> dict[str, Any]:
        m = metrics_from_probs(task, val, _softmax(predict_logits(net, val)))
        return {k: m[k] for k in ("macro_f1", "accuracy", "per_class") if k in m} | (
            {"jk": m["jk"]} if "jk" in m else {}
        )

    return validate


def gate_for(task: Task, data: TaskData, enabled: bool) -> RRGate | None:
    """The RR gate fitted on ``data`` for tasks with N and S classes and an ``rr`` input."""
    if not enabled or "rr" not in task.input_names or not {"N", "S"} <= set(task.classes):
        return None
    n, s = task.classes.index("N"), task.classes.index("S")
    if not (np.any(data.labels == s) and np.any(data.labels != s)):
        _LOGGER.warning("no RR gate: the training data lacks S beats or other beats")
        return None
    return fit_rr_gate(data.features, data.labels, n, s)


def veto_for(task: Task, channels: int, enabled: bool) -> TemplateVeto | None:
    """The task's template veto (``Task.template_veto_rms``) for a signal of ``channels``."""
    if not enabled or task.template_veto_rms is None:
        return None
    if not {"V", "Q"} <= set(task.classes) or channels < 2:
        _LOGGER.warning("no template veto: needs V and Q classes and a template channel")
        return None
    return TemplateVeto(task.template_veto_rms, task.classes.index("V"), task.classes.index("Q"))


def with_views(task: Task, data: TaskData, options: LoadOptions, seed: int) -> TaskData:
    """``data`` plus the task's augmented views of its records (``TASK.options["train_views"]``:
    ``(records, options, seed) -> TaskData``, e.g. the beat task's other rates, polarity,
    wander and noise, ``models.augment``); ``data`` itself when the task has none."""
    views = task.options.get("train_views")
    if views is None or len(data) == 0:
        return data
    extra: TaskData = views(sorted(set(data.groups.tolist())), options, seed)
    _LOGGER.info("training on %d beats + %d of augmented views", len(data), len(extra))
    return TaskData(
        np.concatenate([data.signal, extra.signal]),
        np.concatenate([data.features, extra.features]),
        np.concatenate([data.labels, extra.labels]),
        np.concatenate([data.groups, extra.groups]),
    )


def check_parity(net: SignalNet, onnx_path: Path, data: TaskData, n: int = 256) -> float:
    """Max abs difference of probs between torch and onnxruntime on ``n`` examples.

    Raises
    ------
    AssertionError
        If it exceeds :data:`PARITY_TOLERANCE`.
    """
    part = data.subset(np.arange(min(n, len(data))))
    torch_probs = _softmax(predict_logits(net, part))
    diff = float(np.abs(torch_probs - onnx_predictor(onnx_path)(part)).max())
    if diff > PARITY_TOLERANCE:
        raise AssertionError(f"ONNX export differs from torch by {diff:.2e}")
    return diff


def train_task(
    task: Task,
    request: TrainRequest,
    env: dict[str, str],
    cache_dir: Path | None,
    on_epoch: Callable[[str], EpochCallback | None] | None = None,
) -> dict[str, Any]:
    """Train, distil, export, quantize, evaluate and write the card; returns the metrics.

    Parameters
    ----------
    task : Task
        From ``models.tasks.get_task``.
    request : TrainRequest
        Seed, output folder, smoke-run restrictions.
    env : mapping
        Environment for dataset lookup.
    cache_dir : Path, optional
        Preprocessed-array cache.
    on_epoch : callable, optional
        ``on_epoch(stage)`` returns the epoch callback of stage ``teacher`` / ``student``.
    """
    torch.set_num_threads(request.threads)
    started = time.monotonic()
    out = request.out_dir
    out.mkdir(parents=True, exist_ok=True)
    spec: TrainSpec = task.train
    if request.epochs is not None:
        spec = replace(spec, epochs=request.epochs)
    if request.steps_per_epoch is not None:
        spec = replace(spec, steps_per_epoch=request.steps_per_epoch)
    opts = LoadOptions(env=env, records=request.records, cache_dir=cache_dir)
    train = require_labels(task.load(task.train_split, opts), task.name, task.train_split)
    test = require_labels(
        task.load(task.test_split, replace(opts, records=request.test_records)),
        task.name,
        task.test_split,
    )
    val = None
    fit_data = train
    if request.holdout:
        tr_idx, val_idx = task.validation(train, request.seed)
        fit_data, val = train.subset(tr_idx), train.subset(val_idx)
        _LOGGER.info("holdout groups: %s", sorted(set(val.groups.tolist())))
    validate = _validator(task, val)
    # nets learn from the augmented views too; calibration and the RR gate use the records
    fit_nets = with_views(task, fit_data, opts, request.seed) if request.views else fit_data

    def cb(stage: str) -> EpochCallback | None:
        return on_epoch(stage) if on_epoch is not None else None

    seed_everything(request.seed)  # weight init is part of what the seed reproduces
    teacher = _net(task, task.teacher, fit_data)
    t_hist = fit(
        teacher,
        fit_nets,
        spec,
        seed=request.seed,
        n_classes=len(task.classes),
        validate=validate,
        on_epoch=cb("teacher"),
    )
    save_checkpoint(teacher, out / "teacher.pt", _meta(task, task.teacher, teacher))

    seed_everything(request.seed + 1)
    student = _net(task, task.student, fit_data)
    s_hist = distill(
        student,
        fit_nets,
        spec,
        teacher=teacher,
        seed=request.seed + 1,
        validate=validate,
        on_epoch=cb("student"),
    )
    save_checkpoint(student, out / "student.pt", _meta(task, task.student, student))

    fp32_path = out / f"{task.name}_fp32.onnx"
    int8_path = out / f"{task.name}.onnx"
    head_path = out / f"{task.name}.head.npz"
    names = export_onnx(student, fp32_path, task.input_names)
    parity = check_parity(student, fp32_path, test)
    save_head(student, head_path)
    calib = calibration_inputs(fit_data, names, request.calibration_per_class, request.seed)
    quantize(fp32_path, int8_path, calib)
    evaluations = {}
    teacher_probs = _softmax(predict_logits(teacher, test))
    gate = gate_for(task, fit_data, request.rr_gate)
    if gate is not None:  # the net alone, for the record; then the gate joins both graphs
        evaluations["int8_without_gate"] = metrics_from_probs(
            task, test, onnx_predictor(int8_path)(test)
        )
        teacher_probs = gate.apply(teacher_probs, test.features)
        for path in (fp32_path, int8_path):
            add_rr_gate_to_onnx(path, gate)
    veto = veto_for(task, test.signal.shape[1], request.template_veto)
    if veto is not None:  # what the model served before the veto, for the record
        evaluations["int8_without_veto"] = metrics_from_probs(
            task, test, onnx_predictor(int8_path)(test)
        )
        teacher_probs = veto.apply(teacher_probs, test.signal)
        for path in (fp32_path, int8_path):
            add_template_veto_to_onnx(path, veto, names[0])
    evaluations |= {
        "teacher_fp32": metrics_from_probs(task, test, teacher_probs),
        "fp32": metrics_from_probs(task, test, onnx_predictor(fp32_path)(test)),
        "int8": metrics_from_probs(task, test, onnx_predictor(int8_path)(test)),
    }
    if val is not None:
        evaluations["validation_int8"] = metrics_from_probs(
            task, val, onnx_predictor(int8_path)(val)
        )
    elapsed = time.monotonic() - started
    card = build_card(
        task,
        int8_path,
        head_path,
        names,
        student,
        evaluations,
        seed=request.seed,
        command=request.command,
        train_counts=fit_data.class_counts(len(task.classes)),
        rr_gate=None if gate is None else gate.to_dict(),
        template_veto=None if veto is None else veto.to_dict(),
        notes=(
            f"teacher {count_parameters(teacher)} params, student {count_parameters(student)} "
            f"params; KD T={spec.kd_temperature} alpha={spec.kd_alpha}; {spec.epochs} epochs x "
            f"{spec.steps_per_epoch or 'full'} steps; trained in {elapsed:.0f} s; "
            f"torch/onnx parity {parity:.1e}"
            + (
                "; RR gate fitted on the training beats (teacher metrics include it)"
                if gate
                else ""
            )
            + (f"; validation records held out: {sorted(set(val.groups.tolist()))}" if val else "")
            + (
                f"; nets trained on {len(fit_data)} beats + {len(fit_nets) - len(fit_data)} "
                f"of augmented views ({task.options.get('train_views_description', '')})"
                if len(fit_nets) > len(fit_data)
                else ""
            )
        ),
    )
    summary = {
        "task": task.name,
        "seed": request.seed,
        "elapsed_s": elapsed,
        "parity_max_abs": parity,
        "sizes_bytes": {p.name: p.stat().st_size for p in (fp32_path, int8_path, head_path)},
        "params": {"teacher": count_parameters(teacher), "student": count_parameters(student)},
        "history": {
            "teacher_loss": t_hist.losses,
            "student_loss": s_hist.losses,
            "teacher_val": t_hist.validation,
            "student_val": s_hist.validation,
        },
        "evaluations": evaluations,
        "card": str(out / f"{task.name}.card.json"),
        "train_spec": asdict(spec),
        "version": card.version,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
