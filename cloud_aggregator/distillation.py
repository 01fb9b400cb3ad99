"""Server-side distillation: the federated model teaches a fresh small student, which is
exported and quantized to int8 with MODELS' library (``models.distill``, ``models.export``,
``models.quantize``, ``models.cards``).

The transfer signal is the federated global model's own predictions (soft labels) on a
server-held *transfer set* of beats (a public or consented dataset; no patient's raw signal is
needed). The result is a complete release: new int8 backbone, its head (the next rounds'
federated tensors), and its card. Devices notice the new backbone through
``metrics["backbone_sha256"]`` and re-embed their beats.

Torch and ``models`` are imported inside the functions: an aggregator without the ``train``
extra runs without distillation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.fl_protocol import ModelRelease
from common.model_card import card_path_for

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSettings:
    """How much work one distillation does (it blocks the round loop while it runs).

    Attributes
    ----------
    epochs, steps_per_epoch : int
        Student training budget.
    calibration_per_class : int
        Beats per class for the int8 static calibration.
    seed : int
        Seed of the student initialisation and sampling.
    threads : int
        torch threads.
    """

    epochs: int = 2
    steps_per_epoch: int = 60
    calibration_per_class: int = 100
    seed: int = 0
    threads: int = 2


def teacher_probs(
    onnx_bytes: bytes, inputs: dict[str, npt.NDArray[np.float32]], batch: int = 4096
) -> npt.NDArray[np.float32]:
    """``probs`` output (N, C) of the global model: the soft labels."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    n = len(next(iter(inputs.values())))
    out = [
        sess.run(["probs"], {k: np.ascontiguousarray(inputs[k][s : s + batch]) for k in names})[0]
        for s in range(0, n, batch)
    ]
    return np.concatenate(out).astype(np.float32)


def distill_release(
    release: ModelRelease, transfer: Any, task: Any, settings: DistillSettings = DistillSettings()
) -> ModelRelease:
    """Distil ``release`` into a new int8 student release.

    Parameters
    ----------
    release : ModelRelease
        The aggregated global model (its ``model.onnx`` holds the aggregated head).
    transfer : models.tasks.base.TaskData
        Transfer beats (labels are used for the ``1 - kd_alpha`` cross-entropy term and for
        stratified calibration).
    task : models.tasks.base.Task
        The task (student architecture, input names, training settings, card fields).
    """
    import torch

    from models.cards import build_card
    from models.distill import distill
    from models.evaluate import metrics_from_probs
    from models.export import HEAD_BIAS_KEY, HEAD_WEIGHT_KEY, export_onnx, save_head
    from models.nets import build_net
    from models.quantize import calibration_inputs, quantize

    t0 = time.perf_counter()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    names = list(task.input_names)
    feed = {names[0]: transfer.signal}
    if len(names) > 1 and transfer.features.shape[1]:
        feed[names[1]] = transfer.features
    soft = teacher_probs(release.files["model.onnx"], feed)
    agreement = float(np.mean(soft.argmax(1) == transfer.labels))
    student = build_net(
        task.student,
        transfer.signal.shape[1],
        transfer.signal.shape[2],
        transfer.features.shape[1],
        len(task.classes),
    )
    spec = dataclasses.replace(
        task.train, epochs=settings.epochs, steps_per_epoch=settings.steps_per_epoch
    )
    distill(student, transfer, spec, soft_targets=soft, seed=settings.seed)
    with tempfile.TemporaryDirectory(prefix="medchain-distill-") as tmp:
        fp32, int8, head = (
            Path(tmp) / f"{task.name}_fp32.onnx",
            Path(tmp) / f"{task.name}.onnx",
            Path(tmp) / f"{task.name}.head.npz",
        )
        io_names = export_onnx(student, fp32, tuple(names))
        save_head(student, head)
        quantize(
            fp32,
            int8,
            calibration_inputs(transfer, io_names, settings.calibration_per_class, settings.seed),
        )
        int8_bytes = int8.read_bytes()
        student_probs = teacher_probs(int8_bytes, feed)
        fidelity = float(np.mean(student_probs.argmax(1) == soft.argmax(1)))
        build_card(
            task,
            int8,
            head,
            io_names,
            student,
            # Measured on the transfer set (the server holds no test patients); the
            # "validation_" prefix keeps build_card from labelling it with the test split.
            {"validation_transfer_int8": metrics_from_probs(task, transfer, student_probs)},
            seed=settings.seed,
            command="cloud_aggregator.distillation.distill_release (server-side, per round)",
            train_counts=np.bincount(transfer.labels, minlength=len(task.classes)),
            notes=f"distilled from federated model round {release.round_no}; student/teacher agreement {fidelity:.3f}",
        )
        card_bytes = card_path_for(int8).read_bytes()
        with np.load(head) as z:
            tensors = {
                "head.weight": z[HEAD_WEIGHT_KEY].astype(np.float32),
                "head.bias": z[HEAD_BIAS_KEY].astype(np.float32),
            }
    seconds = time.perf_counter() - t0
    _LOGGER.info(
        "distilled round %d into a new int8 student in %.1f s (fidelity %.3f)",
        release.round_no,
        seconds,
        fidelity,
    )
    metrics = {
        **{k: v for k, v in release.metrics.items() if k != "backbone_sha256"},
        "backbone_sha256": hashlib.sha256(int8_bytes).hexdigest(),
        "distill_fidelity": fidelity,
        "distill_teacher_label_agreement": agreement,
        "distill_s": seconds,
    }
    files = {"model.onnx": int8_bytes, "model.card.json": card_bytes}
    return ModelRelease(release.version, release.round_no, tensors, files, metrics)


def transfer_distiller(
    records: list[str], env: Any, cache: Path | None, settings: DistillSettings = DistillSettings()
) -> Any:
    """``release -> release`` distilling on the beats of MIT-BIH ``records`` (the transfer set)."""
    from models.tasks import get_task
    from models.tasks.base import LoadOptions

    task = get_task("beat")
    transfer = task.load("ds1", LoadOptions(env=env, records=records, cache_dir=cache))

    def run(release: ModelRelease) -> ModelRelease:
        return distill_release(release, transfer, task, settings)

    return run
