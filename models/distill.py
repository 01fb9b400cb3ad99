"""Knowledge distillation: train a student on a teacher's temperature-softened outputs.

Loss (Hinton et al. 2015): ``alpha * T**2 * KL(softmax(t/T) || softmax(s/T)) +
(1 - alpha) * CE(s, y)``. The soft targets come either from a teacher network evaluated on the
same (augmented) batch, or from fixed per-example soft labels (e.g. the aggregator's ensemble of
client predictions); with soft labels the temperature only softens the student.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.tasks.base import TaskData, TrainSpec
from models.train import EpochCallback, TrainHistory, fit, loss_weights

_LOGGER = logging.getLogger(__name__)


def kd_loss(
    student_logits: Tensor,
    teacher_probs_t: Tensor,
    labels: Tensor,
    temperature: float,
    alpha: float,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Distillation loss for one batch.

    Parameters
    ----------
    student_logits : Tensor, shape (B, C)
    teacher_probs_t : Tensor, shape (B, C)
        Teacher probabilities at temperature ``temperature``.
    labels : Tensor, shape (B,)
        Hard labels.
    temperature, alpha : float
        Softening temperature and weight of the KL term.
    class_weights : Tensor, optional
        Cross-entropy class weights.
    """
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_s, teacher_probs_t, reduction="batchmean") * temperature**2
    ce = F.cross_entropy(student_logits, labels, weight=class_weights)
    return alpha * kl + (1 - alpha) * ce


def distill(
    student: nn.Module,
    data: TaskData,
    spec: TrainSpec,
    *,
    teacher: nn.Module | None = None,
    soft_targets: npt.NDArray[np.float32] | None = None,
    seed: int = 0,
    validate: Callable[[nn.Module], dict[str, Any]] | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainHistory:
    """Train ``student`` in place from a teacher network or from fixed soft labels.

    Parameters
    ----------
    student : nn.Module
        ``forward(signal, features) -> (logits, embedding)`` (e.g. ``models.nets.SignalNet``).
    data : TaskData
        Transfer set (labels are used for the ``1 - alpha`` cross-entropy term).
    spec : TrainSpec
        Optimisation settings, ``kd_temperature`` and ``kd_alpha``.
    teacher : nn.Module, optional
        Same interface as the student; evaluated (eval mode, no grad) on every batch.
    soft_targets : ndarray, shape (N, C), optional
        Probabilities per example of ``data`` (rows sum to 1); used when ``teacher`` is None.
    seed : int
        Seeds sampling, augmentation and dropout.

    Returns
    -------
    TrainHistory
    """
    if (teacher is None) == (soft_targets is None):
        raise ValueError("give exactly one of teacher or soft_targets")
    n_classes = int(getattr(student, "n_classes", 0)) or int(data.labels.max()) + 1
    if soft_targets is not None and soft_targets.shape != (len(data), n_classes):
        raise ValueError(f"soft_targets must be ({len(data)}, {n_classes})")
    temp, alpha = spec.kd_temperature, spec.kd_alpha
    weights = loss_weights(data.labels, n_classes, spec.loss_balance)
    if teacher is not None:
        teacher.eval()
    soft_t = None
    if soft_targets is not None:
        # sharpen/soften the given probabilities to the distillation temperature
        logp = np.log(np.clip(soft_targets, 1e-8, 1.0)) / temp
        soft_t = torch.from_numpy(np.asarray(logp, dtype=np.float32)).softmax(dim=1)

    def loss_fn(
        logits: Tensor, labels: Tensor, signal: Tensor, idx: npt.NDArray[np.int64]
    ) -> Tensor:
        if teacher is not None:
            with torch.no_grad():
                feats = torch.from_numpy(np.ascontiguousarray(data.features[idx]))
                t_logits, _ = teacher(signal, feats)
                target = F.softmax(t_logits / temp, dim=1)
        else:
            assert soft_t is not None
            target = soft_t[torch.from_numpy(idx)]
        return kd_loss(logits, target, labels, temp, alpha, weights)

    _LOGGER.info("distilling (T=%.1f, alpha=%.2f) on %d examples", temp, alpha, len(data))
    return fit(
        student,
        data,
        spec,
        seed=seed,
        n_classes=n_classes,
        loss_fn=loss_fn,
        validate=validate,
        on_epoch=on_epoch,
    )
