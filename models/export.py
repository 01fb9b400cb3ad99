"""ONNX export of a trained net with ``probs`` and ``embedding`` outputs, plus the head npz.

The graph has inputs ``(signal_name, features_name)`` (e.g. ``beat`` ``(N, 1, L)`` and ``rr``
``(N, K)``; the features input is omitted when ``K = 0``) and outputs ``probs`` ``(N, C)``
(softmax of the head) and ``embedding`` ``(N, E)`` (the head's input). The head weights are also
written to an ``.npz`` (``W`` shape (C, E), ``b`` shape (C,)) so a device can retrain the head in
numpy: ``probs = softmax(embedding @ W.T + b)``.

The ``cnn`` stages are exported in the polyphase layout of :mod:`models.polyphase` (same
function, faster int8 inference in onnxruntime; checked at export).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.nets import SignalNet
from models.polyphase import default_layouts, polyphase_net, same_function

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


def export_onnx(
    net: SignalNet,
    path: Path,
    input_names: tuple[str, str],
    *,
    polyphase: bool = True,
    phases: tuple[int, ...] | None = None,
    input_phases: int = 1,
) -> list[str]:
    """Export ``net`` (eval mode) to ONNX opset 17 with a dynamic batch axis ``N``.

    Parameters
    ----------
    net : SignalNet
        Trained network.
    path : Path
        Output ``.onnx`` file.
    input_names : (str, str)
        Names of the signal and features inputs.
    polyphase : bool
        Export ``cnn`` stages in the polyphase layout (module docstring); same outputs, int8
        inference in onnxruntime as fast at 1 beat and 1.35-1.4x faster from 32 beats up for
        ``beat`` than the plain graph (AMD EPYC, docs/models.md Speed).
    phases : tuple of int, optional
        Output phases per stage (default: :func:`default_layouts`); an invalid layout exports
        the plain graph.
    input_phases : int
        Phases the input is split into before the first stage, with ``phases``
        (:func:`polyphase_net`).

    Returns
    -------
    list of str
        The graph's input names (1 or 2).
    """
    net.eval()
    trained = net
    if polyphase:
        layouts = default_layouts(len(net.stages)) if phases is None else [(phases, input_phases)]
        for layout in layouts:  # the first that fits the net and computes the same function
            fast = polyphase_net(net, *layout)
            if fast is not None and same_function(net, fast):
                net = fast
                break
        else:
            _LOGGER.info("plain export: no polyphase layout for this net")
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
    trained.eval()
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
