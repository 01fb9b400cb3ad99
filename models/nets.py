"""1-D CNNs for every task: a ResNet teacher and a compact student, same interface.

``forward(signal, features) -> (logits, embedding)`` where ``signal`` is ``(N, C, L)``,
``features`` is ``(N, K)`` (``K`` may be 0), ``embedding`` is the penultimate ``(N, E)``
activation and ``logits = head(embedding)`` with ``head = Linear(E, n_classes)``. Keeping the
head a separate Linear lets a device retrain only the head on embeddings of the frozen int8
backbone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.tasks.base import NetSpec


class ConvStage(nn.Module):
    """Conv -> BN -> ReLU -> MaxPool(2): halves the length."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out


class ResStage(nn.Module):
    """Two convolutions with a residual connection, then MaxPool(2)."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip: nn.Module = (
            nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1, bias=False)
        )
        self.act = nn.ReLU()
        self.pool = nn.MaxPool1d(2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        out: Tensor = self.pool(self.act(y + self.skip(x)))
        return out


class SignalNet(nn.Module):
    """Backbone (conv stages + feature branch + embedding layer) and a linear head.

    Parameters
    ----------
    spec : NetSpec
        Architecture.
    in_channels : int
        ``C`` of the signal input.
    length : int
        ``L`` (samples) of the signal input.
    n_features : int
        ``K`` extra features (0 = none).
    n_classes : int
        Output classes.
    """

    def __init__(
        self, spec: NetSpec, in_channels: int, length: int, n_features: int, n_classes: int
    ) -> None:
        super().__init__()
        if spec.kind not in ("cnn", "resnet"):
            raise ValueError(f"unknown net kind {spec.kind!r}")
        stage = ResStage if spec.kind == "resnet" else ConvStage
        stages: list[nn.Module] = []
        c_in, out_len = in_channels, length
        for width in spec.widths:
            stages.append(stage(c_in, width, spec.kernel))
            c_in, out_len = width, out_len // 2
        if out_len < 1:
            raise ValueError(f"input length {length} too short for {len(spec.widths)} stages")
        self.stages = nn.Sequential(*stages)
        self.n_features = n_features
        flat = c_in * out_len
        self.features: nn.Module | None = None
        if n_features:
            self.features = nn.Sequential(nn.Linear(n_features, spec.feature_dim), nn.ReLU())
            flat += spec.feature_dim
        self.embed = nn.Sequential(
            nn.Dropout(spec.dropout), nn.Linear(flat, spec.embedding_dim), nn.ReLU()
        )
        self.head = nn.Linear(spec.embedding_dim, n_classes)
        self.in_channels, self.length, self.n_classes = in_channels, length, n_classes
        self.embedding_dim = spec.embedding_dim

    def embedding(self, signal: Tensor, features: Tensor) -> Tensor:
        """Penultimate activations ``(N, E)``."""
        z = torch.flatten(self.stages(signal), 1)
        if self.features is not None:
            z = torch.cat([z, self.features(features)], dim=1)
        out: Tensor = self.embed(z)
        return out

    def forward(self, signal: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.embedding(signal, features)
        return self.head(emb), emb


def build_net(
    spec: NetSpec, in_channels: int, length: int, n_features: int, n_classes: int
) -> SignalNet:
    """Construct a :class:`SignalNet` (weights initialised from torch's global RNG)."""
    return SignalNet(spec, in_channels, length, n_features, n_classes)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
