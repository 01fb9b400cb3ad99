"""1-D CNNs for every task: a ResNet teacher and a compact student, same interface.

``forward(signal, features) -> (logits, embedding)`` where ``signal`` is ``(N, C, L)``,
``features`` is ``(N, K)`` (``K`` may be 0), ``embedding`` is the penultimate ``(N, E)``
activation and ``logits = head(embedding)`` with ``head = Linear(E, n_classes)``. Keeping the
head a separate Linear lets a device retrain only the head on embeddings of the frozen int8
backbone.

Kinds ``cnn_rr`` / ``resnet_rr`` add an RR expert: the extra features are log-transformed (so
ratios are symmetric and ``log(post/pre)`` is linear in them) and, besides joining the
convolutional path, feed a small MLP whose output is the last :data:`RR_EXPERT_DIM` units of the
embedding. During training an auxiliary linear head on those units alone
(:meth:`SignalNet.auxiliary_loss`) makes them classify by rhythm without morphology, so a
premature beat of normal shape (an SVEB whose template is itself ectopic) still gets a voice in
the shared linear head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.tasks.base import NetSpec

RR_EXPERT_DIM = 8  # embedding units reserved for the RR expert (kinds ``*_rr``)
RR_EXPERT_HIDDEN = 32
RR_AUX_WEIGHT = 0.5  # weight of the RR-only auxiliary cross-entropy in training
_LOG_FLOOR = 1e-3  # s or ratio; RR features are positive, the floor only guards log(0)
_KINDS = ("cnn", "resnet", "cnn_rr", "resnet_rr")


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
        if spec.kind not in _KINDS:
            raise ValueError(f"unknown net kind {spec.kind!r} (one of {_KINDS})")
        self.rr_expert: nn.Module | None = None
        self.rr_head: nn.Linear | None = None
        expert = spec.kind.endswith("_rr") and n_features > 0
        if expert and spec.embedding_dim <= RR_EXPERT_DIM:
            raise ValueError(f"embedding_dim must exceed {RR_EXPERT_DIM} for kind {spec.kind}")
        stage = ResStage if spec.kind.startswith("resnet") else ConvStage
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
        conv_dim = spec.embedding_dim - (RR_EXPERT_DIM if expert else 0)
        self.embed = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(flat, conv_dim), nn.ReLU())
        if expert:
            self.rr_expert = nn.Sequential(
                nn.Linear(n_features, RR_EXPERT_HIDDEN),
                nn.ReLU(),
                nn.Linear(RR_EXPERT_HIDDEN, RR_EXPERT_DIM),
                nn.ReLU(),
            )
            self.rr_head = nn.Linear(RR_EXPERT_DIM, n_classes)
        self._rr_units: Tensor | None = None  # last forward's expert output, for the aux loss
        self.head = nn.Linear(spec.embedding_dim, n_classes)
        self.in_channels, self.length, self.n_classes = in_channels, length, n_classes
        self.embedding_dim = spec.embedding_dim

    def embedding(self, signal: Tensor, features: Tensor) -> Tensor:
        """Penultimate activations ``(N, E)``."""
        z = torch.flatten(self.stages(signal), 1)
        if self.rr_expert is not None:
            features = torch.log(torch.clamp(features, min=_LOG_FLOOR))
        if self.features is not None:
            z = torch.cat([z, self.features(features)], dim=1)
        out: Tensor = self.embed(z)
        if self.rr_expert is not None:
            units = self.rr_expert(features)
            # kept for auxiliary_loss only while training (a graph tensor would block deepcopy)
            self._rr_units = units if self.training else None
            out = torch.cat([out, units], dim=1)
        return out

    def train(self, mode: bool = True) -> SignalNet:
        """Switch mode and drop any unconsumed expert output (it would block deepcopy/export)."""
        self._rr_units = None
        super().train(mode)
        return self

    def auxiliary_loss(self, labels: Tensor, weight: Tensor | None = None) -> Tensor | None:
        """RR-only cross-entropy of the last training-mode forward pass, consumed once.

        None without an RR expert, in eval mode, or when already taken.

        Parameters
        ----------
        labels : Tensor, shape (B,)
            Hard labels of the batch just passed through :meth:`forward`.
        weight : Tensor, optional
            Class weights of the cross-entropy.
        """
        units, self._rr_units = self._rr_units, None
        if self.rr_head is None or units is None:
            return None
        aux = F.cross_entropy(self.rr_head(units), labels, weight=weight)
        return RR_AUX_WEIGHT * aux

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
