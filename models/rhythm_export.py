"""ONNX export, int8 quantization and onnxruntime inference of the rhythm v2 student.

The graph has inputs ``ecg`` ``(N, 1, L)`` float32 (``L`` dynamic: one window of 9-30 s at
128 Hz, or a batch of windows of one length) and ``features`` ``(N, K)`` and outputs ``probs``
``(N, C)`` and ``embedding`` ``(N, E)``. int8: ``models.quantize.quantize`` (static QDQ, U8
activations, 7-bit symmetric per-channel weights, head and softmax fp32), calibrated on 30 s
windows of every class of the training bank.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from common.model_card import OnnxIO, TensorSpec
from models.quantize import quantize, stratified_indices
from models.rhythm_data import WindowBank
from models.rhythm_net import RhythmNet

_LOGGER = logging.getLogger(__name__)

INPUT_NAMES = ("ecg", "features")
OPSET = 17
CALIBRATION_PER_CLASS = 150


class _Probs(nn.Module):
    def __init__(self, net: RhythmNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, ecg: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        logits, emb = self.net(ecg, features)
        return torch.softmax(logits, dim=1), emb


def export_rhythm_onnx(net: RhythmNet, path: Path) -> Path:
    """Export ``net`` (eval mode, no ``lengths`` input) with dynamic batch and length axes."""
    net.eval()
    module = _Probs(net).eval()
    args = (torch.zeros(2, net.in_channels, 3840), torch.zeros(2, net.n_features))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but exact here
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["probs", "embedding"],
            dynamic_axes={
                "ecg": {0: "N", 2: "L"},
                "features": {0: "N"},
                "probs": {0: "N"},
                "embedding": {0: "N"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def onnx_io(net: RhythmNet) -> OnnxIO:
    """The exported graph's inputs and outputs, for the card."""
    return OnnxIO(
        (
            TensorSpec("ecg", ("N", net.in_channels, "L")),
            TensorSpec("features", ("N", net.n_features)),
        ),
        (
            TensorSpec("probs", ("N", net.n_classes)),
            TensorSpec("embedding", ("N", net.spec.embedding_dim)),
        ),
    )


def calibration(
    bank: WindowBank, length: int, per_class: int = CALIBRATION_PER_CLASS, seed: int = 0
) -> dict[str, npt.NDArray[np.float32]]:
    """Class-stratified full windows of ``length`` samples: ``{"ecg", "features"}``."""
    pool = np.flatnonzero((bank.lengths() == length) & ~bank.short)
    idx = pool[stratified_indices(bank.labels[pool], per_class, seed)]
    ecg = np.stack([bank.inputs(int(i)) for i in idx]).astype(np.float32)
    return {"ecg": ecg, "features": bank.features[idx].astype(np.float32)}


def quantize_rhythm(fp32: Path, int8: Path, bank: WindowBank, seed: int = 0) -> Path:
    """int8 static QDQ of the exported student (``models.quantize.quantize``)."""
    return quantize(
        fp32, int8, calibration(bank, int(np.bincount(bank.lengths()).argmax()), seed=seed)
    )
