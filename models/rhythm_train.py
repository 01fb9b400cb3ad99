"""Training and torch inference of the rhythm v2 nets on a :class:`~models.rhythm_data.WindowBank`.

An epoch visits every recording once: one of its windows at random (its seeded short 9-20 s
window with probability ``short_share``, else one of its full windows); MIT-BIH and AFTDB
windows are recordings of their own. Batches are zero-padded to their longest window and the
net masks the padding (``models.rhythm_net``). Class imbalance: loss weights
``count ** -loss_balance`` (``TrainSpec.loss_balance``), label smoothing
(``TrainSpec.label_smoothing``). Augmentation on the normalised signal: a random 75-100 % part of
each window (never under 9 s; the window's features stay those of the whole window), amplitude
0.7-1.3, baseline wander (0.05-0.5 Hz, up to 0.15), white noise (sd up to 0.05), then the
contract's clip. A ``teacher`` turns the loss into knowledge distillation
(``models.distill.kd_loss``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.signals.rhythm_input import CLIP, INPUT_FS_HZ, MIN_S
from models.distill import kd_loss
from models.rhythm_data import WindowBank
from models.rhythm_net import RhythmNet
from models.tasks.base import TrainSpec
from models.train import TrainHistory, loss_weights

_LOGGER = logging.getLogger(__name__)

SHORT_SHARE = 0.2  # probability of drawing a recording's short window in an epoch
CROP_FRACTION = 0.75  # augmentation: the net sees a random 75-100 % of a window
EVERY_WINDOW = ("mitdb/",)  # long recordings whose windows all count in every epoch
EpochHook = Callable[[int, float], None]


class RecordWindows:
    """Window indices of every recording of a bank, full and short."""

    def __init__(self, bank: WindowBank) -> None:
        order = np.argsort(bank.records, kind="stable")
        names, starts = np.unique(bank.records[order], return_index=True)
        groups = np.split(order, starts[1:])
        self.full: list[npt.NDArray[np.int64]] = []
        self.short: list[npt.NDArray[np.int64]] = []
        for g in groups:
            self.full.append(g[~bank.short[g]])
            self.short.append(g[bank.short[g]])
        self.names = names

    def draw(
        self, rng: np.random.Generator, short_share: float, every_max: int | None = None
    ) -> npt.NDArray[np.int64]:
        """One window per recording; every window of the :data:`EVERY_WINDOW` recordings (a
        30-min MIT-BIH record has 60 windows of different rhythms), or ``every_max`` of them
        drawn at random."""
        picks: list[int] = []
        for name, full, short in zip(self.names, self.full, self.short, strict=True):
            every = str(name).startswith(EVERY_WINDOW)
            if short.size and rng.random() < short_share:
                picks.append(int(rng.choice(short)))
            elif full.size and every and every_max is not None and full.size > every_max:
                picks += rng.choice(full, every_max, replace=False).tolist()
            elif full.size and every:
                picks += full.tolist()
            elif full.size:
                picks.append(int(rng.choice(full)))
        out = np.asarray(picks, dtype=np.int64)
        rng.shuffle(out)
        return out


def batch_tensors(
    bank: WindowBank, idx: npt.NDArray[np.int64]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``signal (B, C, Lmax)`` zero-padded (C = ``bank.channels``), ``features (B, K)``,
    ``lengths (B,)``, ``labels (B,)``."""
    lengths = bank.lengths()[idx]
    out = np.zeros((idx.size, bank.channels, int(lengths.max())), dtype=np.float32)
    for row, i in enumerate(idx):
        w = bank.inputs(int(i))
        out[row, :, : w.shape[1]] = w
    return (
        torch.from_numpy(out),
        torch.from_numpy(bank.features[idx].astype(np.float32)),
        torch.from_numpy(lengths.astype(np.int64)),
        torch.from_numpy(bank.labels[idx].astype(np.int64)),
    )


def random_crop(
    signal: Tensor, lengths: Tensor, gen: torch.Generator, min_fraction: float = CROP_FRACTION
) -> tuple[Tensor, Tensor]:
    """A random part (``min_fraction``-1 of its length, never under 9 s) of every window,
    moved to the start; the window's features stay those of the whole window."""
    out = torch.zeros_like(signal)
    new = lengths.clone()
    floor = round(MIN_S * INPUT_FS_HZ)
    for i in range(signal.shape[0]):
        n = int(lengths[i])
        lo = min(n, max(floor, round(min_fraction * n)))
        m = int(torch.randint(lo, n + 1, (1,), generator=gen))
        start = int(torch.randint(0, n - m + 1, (1,), generator=gen))
        out[i, :, :m] = signal[i, :, start : start + m]
        new[i] = m
    return out, new


def augment(signal: Tensor, lengths: Tensor, gen: torch.Generator) -> Tensor:
    """Amplitude, baseline wander and noise on the valid part of every window's ECG (channel
    0; an RR track in channel 1 is timing, left as it is); clipped."""
    track = signal[:, 1:]
    signal = signal[:, :1]
    b, _, n = signal.shape
    t = torch.arange(n, dtype=torch.float32) / INPUT_FS_HZ
    scale = 0.7 + 0.6 * torch.rand(b, 1, 1, generator=gen)
    freq = 0.05 + 0.45 * torch.rand(b, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(b, 1, 1, generator=gen)
    wander = 0.15 * torch.rand(b, 1, 1, generator=gen) * torch.sin(2 * math.pi * freq * t + phase)
    noise = 0.05 * torch.rand(b, 1, 1, generator=gen) * torch.randn(signal.shape, generator=gen)
    valid = (torch.arange(n).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(signal.dtype)
    ecg = torch.clamp(signal * scale + wander + noise, -CLIP, CLIP) * valid
    return torch.cat([ecg, track], dim=1)


def fit_rhythm(
    net: RhythmNet,
    bank: WindowBank,
    spec: TrainSpec,
    *,
    seed: int,
    teacher: nn.Module | None = None,
    on_epoch: EpochHook | None = None,
    short_share: float = SHORT_SHARE,
    every_max: int | None = None,
) -> TrainHistory:
    """Train ``net`` (in place) on ``bank``; with ``teacher``, by distillation from it;
    ``every_max``: windows of each MIT-BIH record per epoch (None: all)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    windows = RecordWindows(bank)
    steps = spec.steps_per_epoch or max(
        1,
        math.ceil(
            len(windows.draw(np.random.default_rng(0), short_share, every_max)) / spec.batch_size
        ),
    )
    weights = loss_weights(bank.labels, net.n_classes, spec.loss_balance)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=spec.epochs * steps
    )
    if teacher is not None:
        teacher.eval()
    history = TrainHistory()
    for epoch in range(spec.epochs):
        started, losses = time.monotonic(), []
        order = windows.draw(rng, short_share, every_max)
        net.train()
        for step in range(steps):
            idx = order[(np.arange(spec.batch_size) + step * spec.batch_size) % order.size]
            signal, feats, lengths, labels = batch_tensors(bank, idx)
            if spec.augment:
                signal, lengths = random_crop(signal, lengths, gen)
                signal = augment(signal, lengths, gen)
            logits, _ = net(signal, feats, lengths)
            loss: Tensor
            if teacher is None:
                loss = F.cross_entropy(
                    logits, labels, weight=weights, label_smoothing=spec.label_smoothing
                )
            else:
                with torch.no_grad():
                    t_logits, _ = teacher(signal, feats, lengths)
                soft = torch.softmax(t_logits / spec.kd_temperature, dim=1)
                loss = kd_loss(logits, soft, labels, spec.kd_temperature, spec.kd_alpha, weights)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.losses.append(float(np.mean(losses)))
        _LOGGER.info(
            "epoch %d/%d loss %.4f (%.0f s)",
            epoch + 1,
            spec.epochs,
            history.losses[-1],
            time.monotonic() - started,
        )
        if on_epoch is not None:
            on_epoch(epoch, history.losses[-1])
    net.eval()
    return history


@torch.no_grad()
def predict_windows(
    net: nn.Module, bank: WindowBank, idx: npt.NDArray[np.int64] | None = None, batch: int = 128
) -> npt.NDArray[np.float32]:
    """Softmax probabilities ``(n, C)`` of the windows ``idx`` (default all), torch."""
    net.eval()
    idx = np.arange(len(bank)) if idx is None else idx
    order = idx[np.argsort(bank.lengths()[idx], kind="stable")]  # similar lengths together
    out: dict[int, npt.NDArray[np.float32]] = {}
    for k in range(0, order.size, batch):
        part = order[k : k + batch]
        signal, feats, lengths, _ = batch_tensors(bank, part)
        logits, _ = net(signal, feats, lengths)
        for i, p in zip(part, torch.softmax(logits, dim=1).numpy(), strict=True):
            out[int(i)] = p
    return np.stack([out[int(i)] for i in idx]) if idx.size else np.zeros((0, 0), np.float32)


def feature_standardiser(
    bank: WindowBank,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and standard deviation of the bank's features (for ``RhythmNet``)."""
    x = bank.features.astype(np.float64)
    return x.mean(axis=0), x.std(axis=0)
