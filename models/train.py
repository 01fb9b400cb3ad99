"""Supervised training loop shared by teachers and students (torch adapter).

Class imbalance is handled by sampling: each epoch draws ``steps * batch`` examples with
probability proportional to ``count_class ** -balance`` (``balance = 0`` natural, ``1`` fully
balanced), optionally plus a class-weighted loss. Light augmentation (amplitude scale, baseline
offset, noise, +-2 sample shift) fights overfitting to the training patients' morphology.
Two optional augmentations act on the auxiliary channels (``1:``, the beat task's template
residual): dropout (``TrainSpec.aux_channel_dropout``) and the class swap
(``TrainSpec.aux_channel_swap``, :func:`swap_aux_channels`), which gives premature SVEBs the
residual of a usual beat so that the RR features must call them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from models.tasks.base import TaskData, TrainSpec

_LOGGER = logging.getLogger(__name__)

# (epoch, loss, validation metrics or None) -> None; used for progress reporting
EpochCallback = Callable[[int, float, dict[str, Any] | None], None]


@dataclass
class TrainHistory:
    """Per-epoch mean training loss and optional validation metrics."""

    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU) so that weight init and dropout are reproducible."""
    torch.manual_seed(seed)


def sampling_weights(labels: npt.NDArray[np.int64], balance: float) -> npt.NDArray[np.float64]:
    """Per-example probabilities ``~ count(label) ** -balance``, summing to 1."""
    counts = np.bincount(labels).astype(np.float64)
    per_class = np.where(counts > 0, np.maximum(counts, 1.0) ** -balance, 0.0)
    w = per_class[labels]
    return w / w.sum()  # type: ignore[no-any-return]


def loss_weights(labels: npt.NDArray[np.int64], n_classes: int, power: float) -> Tensor | None:
    """Class weights ``count ** -power`` normalised to mean 1 over present classes (None if 0)."""
    if power == 0:
        return None
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    w = w / w[counts > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


def epoch_batches(
    data: TaskData, spec: TrainSpec, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.int64]]:
    """Index batches of one epoch, drawn with class-balancing probabilities."""
    steps = spec.steps_per_epoch or max(1, len(data) // spec.batch_size)
    p = sampling_weights(data.labels, spec.balance)
    for _ in range(steps):
        yield rng.choice(len(data), size=spec.batch_size, replace=True, p=p).astype(np.int64)


def augment(signal: Tensor, gen: torch.Generator) -> Tensor:
    """Random amplitude scale (0.8-1.2), offset (+-0.1), noise (sd 0.02), shift (+-2 samples)."""
    n = signal.shape[0]
    scale = 0.8 + 0.4 * torch.rand(n, 1, 1, generator=gen)
    offset = 0.2 * (torch.rand(n, 1, 1, generator=gen) - 0.5)
    noise = 0.02 * torch.randn(signal.shape, generator=gen)
    shift = int(torch.randint(-2, 3, (1,), generator=gen))
    out = signal * scale + offset + noise
    return torch.roll(out, shifts=shift, dims=2) if shift else out


def drop_aux_channels(signal: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Zero channels ``1:`` of each example with probability ``p`` (channel 0 is kept)."""
    if p <= 0 or signal.shape[1] < 2:
        return signal
    keep = (torch.rand(signal.shape[0], 1, 1, generator=gen) >= p).to(signal.dtype)
    return torch.cat([signal[:, :1], signal[:, 1:] * keep], dim=1)


def swap_aux_channels(
    signal: Tensor,
    labels: Tensor,
    p: float,
    classes: tuple[int, int],
    gen: torch.Generator,
    eligible: Tensor | None = None,
) -> Tensor:
    """Give examples of ``classes[0]`` the auxiliary channels of random ``classes[1]`` examples.

    Each example of the receiving class gets, with probability ``p``, channels ``1:`` of a
    donor drawn uniformly (with replacement) from the donor-class examples of the same batch;
    channel 0 is kept. For the beat task, (S, N): an SVEB whose template residual says "usual
    beat", as in a patient whose usual beat is itself an SVEB.

    Parameters
    ----------
    signal : Tensor, shape (B, C, L)
    labels : Tensor, shape (B,)
    p : float
        Swap probability per receiving example (0 returns ``signal`` and draws no random number,
        so runs without the swap are unchanged).
    classes : (int, int)
        (receiving class, donor class).
    gen : torch.Generator
    eligible : Tensor of bool, shape (B,), optional
        Only these examples may receive (see :func:`swap_eligible`); default all.
    """
    if p <= 0 or signal.shape[1] < 2:
        return signal
    wanted = labels == classes[0]
    if eligible is not None:
        wanted = wanted & eligible
    receivers = torch.nonzero(wanted).flatten()
    donors = torch.nonzero(labels == classes[1]).flatten()
    if len(receivers) == 0 or len(donors) == 0:
        return signal
    chosen = receivers[torch.rand(len(receivers), generator=gen) < p]
    source = donors[torch.randint(len(donors), (len(chosen),), generator=gen)]
    out = signal.clone()
    out[chosen, 1:] = signal[source, 1:]
    return out


def swap_eligible(features: Tensor, spec: TrainSpec) -> Tensor | None:
    """Examples whose smallest ``spec.aux_swap_features`` is below ``spec.aux_swap_below``.

    None (everyone eligible) when no features are named. Beat task: premature beats by
    ``rr_pre/rr_local`` and ``rr_pre/rr_long``.
    """
    if not spec.aux_swap_features:
        return None
    cols = features[:, list(spec.aux_swap_features)]
    return cols.min(dim=1).values < spec.aux_swap_below


def to_tensors(data: TaskData, index: npt.NDArray[np.int64]) -> tuple[Tensor, Tensor, Tensor]:
    """(signal, features, labels) tensors of the examples at ``index``."""
    return (
        torch.from_numpy(np.ascontiguousarray(data.signal[index])),
        torch.from_numpy(np.ascontiguousarray(data.features[index])),
        torch.from_numpy(np.ascontiguousarray(data.labels[index])),
    )


@torch.no_grad()
def predict_logits(net: nn.Module, data: TaskData, batch_size: int = 2048) -> npt.NDArray[Any]:
    """Logits ``(N, C)`` of a torch net in eval mode."""
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data)))
        s, f, _ = to_tensors(data, idx)
        out.append(net(s, f)[0].numpy())
    net.train(was_training)
    n_classes = int(getattr(net, "n_classes", 0))
    return np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)


def _auxiliary(net: nn.Module, labels: Tensor, weights: Tensor | None) -> Tensor | None:
    """The net's own auxiliary loss of the last forward pass, if it defines one.

    ``models.nets.SignalNet`` kinds ``*_rr`` train their RR expert with an RR-only head; plain
    kinds (and other modules) return / have none.
    """
    aux = getattr(net, "auxiliary_loss", None)
    if aux is None:
        return None
    out: Tensor | None = aux(labels, weights)
    return out


def fit(
    net: nn.Module,
    data: TaskData,
    spec: TrainSpec,
    *,
    seed: int,
    n_classes: int,
    loss_fn: Callable[[Tensor, Tensor, Tensor, npt.NDArray[np.int64]], Tensor] | None = None,
    validate: Callable[[nn.Module], dict[str, Any]] | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainHistory:
    """Train ``net`` in place with AdamW + one-cycle LR.

    Parameters
    ----------
    net : nn.Module
        ``forward(signal, features) -> (logits, embedding)``.
    data : TaskData
        Training examples.
    spec : TrainSpec
        Epochs, batch size, learning rate, balancing, augmentation.
    seed : int
        Seeds sampling, augmentation and dropout.
    n_classes : int
        Number of output classes.
    loss_fn : callable, optional
        ``loss_fn(logits, labels, signal, index) -> scalar``; default (weighted) cross-entropy.
        Distillation passes its own (see ``models.distill``). A net's own
        ``auxiliary_loss(labels, class_weights)`` (e.g. the RR expert of ``*_rr`` kinds) is
        added to it.
    validate : callable, optional
        Called after every epoch with the net in eval mode; its dict goes to the history.
    on_epoch : callable, optional
        Progress callback.
    """
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    weights = loss_weights(data.labels, n_classes, spec.loss_balance)
    ce = nn.CrossEntropyLoss(weight=weights, label_smoothing=spec.label_smoothing)
    steps = spec.steps_per_epoch or max(1, len(data) // spec.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=max(1, spec.epochs * steps)
    )
    history = TrainHistory()
    for epoch in range(spec.epochs):
        net.train()
        total = 0.0
        for idx in epoch_batches(data, spec, rng):
            signal, feats, labels = to_tensors(data, idx)
            signal = swap_aux_channels(
                signal,
                labels,
                spec.aux_channel_swap,
                spec.aux_swap_classes,
                gen,
                swap_eligible(feats, spec),
            )
            if spec.augment:
                signal = augment(signal, gen)
            signal = drop_aux_channels(signal, spec.aux_channel_dropout, gen)
            logits, _ = net(signal, feats)
            loss = loss_fn(logits, labels, signal, idx) if loss_fn else ce(logits, labels)
            extra = _auxiliary(net, labels, weights)
            if extra is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.losses.append(total / steps)
        metrics = None
        if validate is not None:
            net.eval()
            metrics = validate(net)
            history.validation.append(metrics)
        _LOGGER.info("epoch %d/%d loss %.4f", epoch + 1, spec.epochs, history.losses[-1])
        if on_epoch is not None:
            on_epoch(epoch, history.losses[-1], metrics)
    net.eval()
    return history
