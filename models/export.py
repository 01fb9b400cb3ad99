"""ONNX export of a trained net with ``probs`` and ``embedding`` outputs, plus the head npz.

The graph has inputs ``(signal_name, features_name)`` (e.g. ``beat`` ``(N, 1, L)`` and ``rr``
``(N, K)``; the features input is omitted when ``K = 0``) and outputs ``probs`` ``(N, C)``
(softmax of the head) and ``embedding`` ``(N, E)`` (the head's input). The head weights are also
written to an ``.npz`` (``W`` shape (C, E), ``b`` shape (C,)) so a device can retrain the head in
numpy: ``probs = softmax(embedding @ W.T + b)``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.nets import SignalNet

_LOGGER = logging.getLogger(__name__)

OPSET = 17
HEAD_WEIGHT_KEY = "W"
HEAD_BIAS_KEY = "b"


class _ProbsAndEmbedding(nn.Module):
    """Export wrapper: ``(signal, features) -> (softmax(logits), embedding)``."""

    def __init__(self, net: SignalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, signal: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        logits, emb = self.net(signal, features)
        return torch.softmax(logits, dim=1), emb


class _SignalOnly(nn.Module):
    """Export wrapper for tasks without extra features (one input)."""

    def __init__(self, net: SignalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, signal: Tensor) -> tuple[Tensor, Tensor]:
        empty = signal.new_zeros((signal.shape[0], 0))
        logits, emb = self.net(signal, empty)
        return torch.softmax(logits, dim=1), emb


def export_onnx(net: SignalNet, path: Path, input_names: tuple[str, str]) -> list[str]:
    """Export ``net`` (eval mode) to ONNX opset 17 with a dynamic batch axis ``N``.

    Parameters
    ----------
    net : SignalNet
        Trained network.
    path : Path
        Output ``.onnx`` file.
    input_names : (str, str)
        Names of the signal and features inputs.

    Returns
    -------
    list of str
        The graph's input names (1 or 2).
    """
    net.eval()
    signal = torch.zeros(2, net.in_channels, net.length)
    names = [input_names[0]]
    module: nn.Module
    args: tuple[Tensor, ...]
    if net.n_features:
        names.append(input_names[1])
        module, args = _ProbsAndEmbedding(net), (signal, torch.zeros(2, net.n_features))
    else:
        module, args = _SignalOnly(net), (signal,)
    module.eval()  # the exporter restores the wrapper's mode afterwards, recursively
    axes = {n: {0: "N"} for n in [*names, "probs", "embedding"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but exact and fast for these small CNNs
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["probs", "embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    net.eval()
    _LOGGER.info("exported %s (%d bytes)", path, path.stat().st_size)
    return names


def save_head(net: SignalNet, path: Path) -> None:
    """Write the head as ``{W: (C, E), b: (C,)}`` float32 npz."""
    w = net.head.weight.detach().numpy().astype(np.float32)
    b = net.head.bias.detach().numpy().astype(np.float32)
    np.savez(path, W=w, b=b)  # keys HEAD_WEIGHT_KEY, HEAD_BIAS_KEY


def save_checkpoint(net: SignalNet, path: Path, meta: dict[str, object]) -> None:
    """Torch checkpoint: state dict plus what is needed to rebuild the net."""
    torch.save({"state_dict": net.state_dict(), "meta": meta}, path)
