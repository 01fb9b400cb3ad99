"""Build and write the model card of a trained task (see ``common.model_card``)."""

from __future__ import annotations

import logging
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.model_card import (
    Artifact,
    HeadInfo,
    ModelCard,
    OnnxIO,
    TensorSpec,
    TrainingInfo,
    card_path_for,
    file_sha256,
    save_card,
)
from models.export import HEAD_BIAS_KEY, HEAD_WEIGHT_KEY
from models.nets import SignalNet
from models.rr_gate import GATED_ACTIVATION
from models.tasks.base import Task, TaskData
from models.template_veto import vetoed_activation

_LOGGER = logging.getLogger(__name__)

WEIGHTS_7BIT = (
    "per-channel symmetric int8 weights in [-64, 64] (7-bit: the same results on x86 with or "
    "without VNNI and on ARM)"
)
QUANTIZATION = f"int8 static QDQ (onnxruntime), {WEIGHTS_7BIT}, "
QUANTIZATION += (
    "unsigned int8 (U8) MinMax activations calibrated on a class-stratified sample; "
    "head Gemm + Softmax fp32"
)


def onnx_io(net: SignalNet, names: list[str]) -> OnnxIO:
    """Input/output specs of an exported :class:`SignalNet`."""
    inputs = [TensorSpec(names[0], ("N", net.in_channels, net.length))]
    if len(names) > 1:
        inputs.append(TensorSpec(names[1], ("N", net.n_features)))
    outputs = (
        TensorSpec("probs", ("N", net.n_classes)),
        TensorSpec("embedding", ("N", net.embedding_dim)),
    )
    return OnnxIO(tuple(inputs), outputs)


def build_card(
    task: Task,
    model_path: Path,
    head_path: Path,
    names: list[str],
    net: SignalNet,
    evaluations: dict[str, dict[str, Any]],
    *,
    seed: int,
    command: str,
    train_counts: npt.NDArray[np.int64],
    notes: str,
    rr_gate: dict[str, Any] | None = None,
    template_veto: dict[str, Any] | None = None,
) -> ModelCard:
    """Assemble the card of ``model_path`` and write it beside the model.

    ``rr_gate`` (:meth:`models.rr_gate.RRGate.to_dict`) goes into the contract's parameters and
    the head's ``activation``: ``probs`` are then the head's softmax re-split by the gate; so
    does ``template_veto`` (:meth:`models.template_veto.TemplateVeto.to_dict`), applied after it.
    """
    sha = file_sha256(model_path)
    contract = task.contract()
    extra = {"rr_gate": rr_gate, "template_veto": template_veto}
    extra = {k: v for k, v in extra.items() if v is not None}
    if extra:
        contract = replace(contract, parameters={**contract.parameters, **extra})
    activation = "softmax" if rr_gate is None else GATED_ACTIVATION
    if template_veto is not None:
        activation = vetoed_activation(activation)
    card = ModelCard(
        task=task.name,
        classes=task.classes,
        description=task.description,
        input_contract=contract,
        onnx=onnx_io(net, names),
        head=HeadInfo(
            file=head_path.name,
            weight_key=HEAD_WEIGHT_KEY,
            bias_key=HEAD_BIAS_KEY,
            embedding_dim=net.embedding_dim,
            n_classes=net.n_classes,
            activation=activation,
        ),
        training=TrainingInfo(
            data=task.data_description,
            split=(
                f"train on {task.train_split} ({task.splits[task.train_split]}), "
                f"metrics on {task.test_split} ({task.splits[task.test_split]})"
            ),
            seed=seed,
            command=command,
            class_counts={c: int(n) for c, n in zip(task.classes, train_counts, strict=True)},
            notes=notes + (f"; {task.notes}" if task.notes else ""),
        ),
        metrics={
            name: {**m, "split": task.test_split}
            for name, m in evaluations.items()
            if not name.startswith("validation")
        }
        | {k: v for k, v in evaluations.items() if k.startswith("validation")},
        artifact=Artifact(
            file=model_path.name,
            size_bytes=model_path.stat().st_size,
            sha256=sha,
            quantization=QUANTIZATION,
        ),
        version=f"{task.name}-{sha[:12]}",
    )
    save_card(card, card_path_for(model_path))
    return card


@dataclass(frozen=True)
class AppendedStep:
    """A post-processing step appended to a trained model's graph (RR gate, template veto).

    Attributes
    ----------
    append : callable
        Edits the ONNX file at the given path in place.
    parameter : str
        Key of ``input_contract.parameters`` that describes the step; ``value`` its content.
    activation : str
        The card's ``head.activation`` with the step.
    suffix : str
        Appended to the names of the card's previous metrics (``_without_gate``...).
    note : str
        What was appended, for the card's training notes.
    """

    append: Callable[[Path], None]
    parameter: str
    value: dict[str, Any]
    activation: str
    suffix: str
    note: str


def save_rewritten_card(
    card: ModelCard, src: Path, out: Path, parts: list[str], note: str, **changes: Any
) -> ModelCard:
    """Save and return the card of ``out``, which ``medchain <parts>`` wrote from ``src``.

    ``card`` is ``src``'s card. The head npz is copied beside ``out`` when the folder differs;
    the command is appended to the training command and ``note`` to its notes; the artifact
    (file name, size, sha256) and version describe the new file; ``changes`` replace further
    card fields (e.g. ``metrics``).
    """
    if card.head is not None and src.parent.resolve() != out.parent.resolve():
        shutil.copyfile(src.parent / card.head.file, out.parent / card.head.file)
    sha = file_sha256(out)
    command = "medchain " + " ".join(shlex.quote(a) for a in parts)
    new = replace(
        card,
        training=replace(
            card.training,
            command=f"{card.training.command} && {command}",
            notes=f"{card.training.notes}; {note}",
        ),
        artifact=replace(card.artifact, file=out.name, size_bytes=out.stat().st_size, sha256=sha),
        version=f"{card.task}-{sha[:12]}",
        **changes,
    )
    save_card(new, card_path_for(out))
    return new


def append_step_and_recard(
    card: ModelCard,
    src: Path,
    out: Path,
    step: AppendedStep,
    task: Task,
    test: TaskData,
    parts: list[str],
) -> dict[str, Any]:
    """Write ``out`` as ``src`` with a post-processing step appended to its graph, re-card it.

    ``src`` is copied to ``out`` unless they are the same file (in place is allowed:
    ``models/pretrained``), ``step.append(out)`` edits the graph, the metrics are re-measured on
    ``test`` (the card's previous ones are kept with ``step.suffix``), and the card gets the step's
    contract parameter and head activation (:func:`save_rewritten_card`).

    Returns
    -------
    dict
        The re-measured metrics (``models.evaluate.metrics_from_probs``).
    """
    from models.evaluate import metrics_from_probs
    from models.predict import onnx_predictor

    out.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != out.resolve():
        shutil.copyfile(src, out)
    step.append(out)
    measured = metrics_from_probs(task, test, onnx_predictor(out)(test))
    metrics: dict[str, Any] = {f"{k}{step.suffix}": v for k, v in card.metrics.items()}
    metrics["int8"] = {**measured, "split": task.test_split}
    params = {**card.input_contract.parameters, step.parameter: step.value}
    save_rewritten_card(
        card,
        src,
        out,
        parts,
        f"{step.note} (sha256 before it {card.artifact.sha256})",
        input_contract=replace(card.input_contract, parameters=params),
        head=None if card.head is None else replace(card.head, activation=step.activation),
        metrics=metrics,
    )
    return measured
