"""The rhythm v2 network: a 1-D CNN over a whole window of any length, with the RR features.

``RhythmNet(signal (N, 1, L), features (N, K), lengths (N,) or None) -> (logits, embedding)``:

- stem: Conv(1 -> w0, kernel 11, stride 2) -> BN -> ReLU -> MaxPool(2) (128 Hz -> 32 Hz);
- stages (``models.nets.ConvStage`` for the student, ``ResStage`` for the teacher), each halving
  the length;
- global average and global max over time (a window of 9 s and one of 60 s give one vector);
- the features standardised with the training set's mean and scale (buffers, exported as
  constants), clipped to +-5, through ``Linear(K -> feature_dim) -> ReLU``;
- ``Dropout -> Linear -> ReLU`` = the embedding, and ``head = Linear(E -> classes)``.

Training pads the windows of a batch to one length and passes their ``lengths``: activations
past a window's end are set to 0 after every stage and left out of the pooling, which is what
a zero-padded convolution over the unpadded window computes, so the exported graph (dynamic
length axis, no ``lengths`` input) gives the training numbers on one window at a time.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from models.nets import ConvStage, ResStage
from models.tasks.base import NetSpec

FEATURE_CLIP = 5.0  # standardised features are clipped to +-this
STEM_KERNEL = 11


class RhythmNet(nn.Module):
    """See the module docstring.

    Parameters
    ----------
    spec : NetSpec
        ``kind`` ``"resnet"`` (teacher) or ``"cnn"`` (student); ``widths[0]`` is the stem.
    feature_mean, feature_scale : ndarray, shape (K,)
        Standardisation of the features (from the training windows).
    n_classes : int
    in_channels : int
        1 (the ECG), or 2 with the RR track (``common.signals.rr_track``).
    """

    def __init__(
        self,
        spec: NetSpec,
        feature_mean: npt.ArrayLike,
        feature_scale: npt.ArrayLike,
        n_classes: int,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(np.asarray(feature_mean, dtype=np.float32))
        scale = torch.as_tensor(np.maximum(np.asarray(feature_scale, dtype=np.float32), 1e-6))
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_scale", scale)
        w0 = spec.widths[0]
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, w0, STEM_KERNEL, stride=2, padding=STEM_KERNEL // 2, bias=False),
            nn.BatchNorm1d(w0),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        stage = _ResStage if spec.kind.startswith("resnet") else ConvStage
        stages: list[nn.Module] = []
        for c_in, c_out in zip(spec.widths[:-1], spec.widths[1:], strict=True):
            stages.append(stage(c_in, c_out, spec.kernel))
        self.stages = nn.ModuleList(stages)
        k = int(mean.numel())
        self.features = nn.Sequential(nn.Linear(k, spec.feature_dim), nn.ReLU())
        self.embed = nn.Sequential(
            nn.Dropout(spec.dropout),
            nn.Linear(2 * spec.widths[-1] + spec.feature_dim, spec.embedding_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(spec.embedding_dim, n_classes)
        self.spec, self.n_features, self.n_classes = spec, k, n_classes
        self.in_channels = in_channels

    def embedding(self, signal: Tensor, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Penultimate activations ``(N, E)``."""
        h = self.stem(signal)
        n = (
            None
            if lengths is None
            else torch.div(
                torch.div(lengths + 1, 2, rounding_mode="floor"), 2, rounding_mode="floor"
            )
        )
        h = _masked(h, n)
        for stage in self.stages:
            h = stage(h, n) if isinstance(stage, _ResStage) else stage(h)
            n = None if n is None else torch.div(n, 2, rounding_mode="floor")
            h = _masked(h, n)
        if n is None:
            pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        else:
            count = torch.clamp(n, min=1).to(h.dtype).unsqueeze(1)
            pooled = torch.cat([h.sum(dim=2) / count, h.amax(dim=2)], dim=1)
        mean, scale = self.get_buffer("feature_mean"), self.get_buffer("feature_scale")
        z = torch.clamp((features - mean) / scale, -FEATURE_CLIP, FEATURE_CLIP)
        out: Tensor = self.embed(torch.cat([pooled, self.features(z)], dim=1))
        return out

    def forward(
        self, signal: Tensor, features: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        emb = self.embedding(signal, features, lengths)
        return self.head(emb), emb

    def meta(self) -> dict[str, Any]:
        """What :func:`rebuild` needs besides the state dict."""
        return {
            "spec": asdict(self.spec),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
        }


class _ResStage(ResStage):
    """:class:`models.nets.ResStage` masked between the convolutions too, so a padded batch
    computes what one unpadded window does."""

    def forward(self, x: Tensor, n: Tensor | None = None) -> Tensor:
        y = _masked(self.act(self.bn1(self.conv1(x))), n)
        y = self.bn2(self.conv2(y))
        out: Tensor = self.pool(self.act(y + self.skip(x)))
        return out


def _masked(h: Tensor, n: Tensor | None) -> Tensor:
    """``h`` with positions at or past ``n`` (per example) set to 0."""
    if n is None:
        return h
    keep = torch.arange(h.shape[2], device=h.device).unsqueeze(0) < n.unsqueeze(1)
    return h * keep.unsqueeze(1).to(h.dtype)


def rebuild(meta: dict[str, Any], state: dict[str, Tensor]) -> RhythmNet:
    """A net from :meth:`RhythmNet.meta` and its state dict."""
    spec = NetSpec(**{**meta["spec"], "widths": tuple(meta["spec"]["widths"])})
    k = int(meta["n_features"])
    channels = int(meta.get("in_channels", 1))  # nets saved before the RR track had one
    net = RhythmNet(spec, np.zeros(k), np.ones(k), int(meta["n_classes"]), channels)
    net.load_state_dict(state)
    return net.eval()


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
