"""On-device training of the classifier head in numpy (light mode) for federated rounds.

The backbone is the frozen int8 ONNX model; its ``embedding`` output (shape (n, E)) feeds a
softmax head ``probs = softmax(embedding @ W.T + b)`` with ``W`` (C, E) and ``b`` (C,), the
tensors ``head.weight`` and ``head.bias`` of the federated model. A Raspberry Pi needs only
numpy and onnxruntime for this; full-network training lives in :mod:`edge_agent.trainer_torch`.

The edge agent's buffer provides labelled beats through :class:`LabelledExampleSource`; the
agent adapts its SQLite buffer to that protocol.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.fl_protocol import (
    ClientUpdate,
    RoundConfig,
    Tensors,
    compression_error,
    pack_tensors,
    unpack_tensors,
)
from edge_agent.personal_head import (
    F32,
    HEAD_B,
    HEAD_W,
    PersonalHead,
    card_rr_gate,
    class_weights,
    head_probs,
    personalise,
    softmax,
)
from edge_agent.personal_head_file import (
    PERSONAL_HEAD_FILE,
    load_personal_head,
    save_personal_head,
)

_LOGGER = logging.getLogger(__name__)

# Personalisation lives in edge_agent.personal_head; re-exported here for the device's callers.
__all__ = [
    "HEAD_B",
    "HEAD_W",
    "PERSONAL_HEAD_FILE",
    "Embedder",
    "HeadFit",
    "LabelledExampleSource",
    "LabelledExamples",
    "OnnxEmbedder",
    "PersonalHead",
    "card_rr_gate",
    "class_weights",
    "compress_delta",
    "head_probs",
    "head_update",
    "load_personal_head",
    "personalise",
    "save_personal_head",
    "softmax",
    "train_head",
]


@dataclass(frozen=True)
class LabelledExamples:
    """Labelled model inputs held on the device.

    Attributes
    ----------
    inputs : dict of str to ndarray
        One array per ONNX input name (e.g. ``beat`` (n, 1, L) z-scored, ``rr`` (n, K) s),
        first axis = example.
    labels : ndarray, shape (n,), int64
        Class index in the model card's class order.
    in_af : ndarray, shape (n,), bool, optional
        The beat's stretch was called atrial fibrillation on the device (None: not known).
    """

    inputs: dict[str, npt.NDArray[np.float32]]
    labels: npt.NDArray[np.int64]
    in_af: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class LabelledExampleSource(Protocol):
    """What the trainer needs from the device's buffer (EDGE adapts its SQLite buffer)."""

    def labelled_examples(self, limit: int) -> LabelledExamples:
        """Up to ``limit`` labelled examples (newest first is fine)."""
        ...


class Embedder(Protocol):
    """Runs the frozen backbone: model inputs -> embeddings (n, E) float32."""

    def embed(self, inputs: Mapping[str, npt.NDArray[np.float32]]) -> F32:
        """Embeddings of a batch."""
        ...


@dataclass(frozen=True)
class HeadFit:
    """Result of one local head fit."""

    weight: F32
    bias: F32
    loss: float
    accuracy: float
    n_examples: int
    seconds: float


def train_head(
    emb: F32,
    labels: npt.NDArray[np.int64],
    weight: F32,
    bias: F32,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    mu: float = 0.0,
    l2: float = 1e-4,
    balance: float = 0.5,
    seed: int = 0,
) -> HeadFit:
    """Fit the softmax head by mini-batch SGD with momentum (0.9).

    Parameters
    ----------
    emb : ndarray, shape (n, E)
        Embeddings of the local examples.
    labels : ndarray, shape (n,)
        Class indices.
    weight, bias : ndarray, shapes (C, E), (C,)
        Starting head (the global model); also the FedProx anchor.
    epochs, lr, batch_size : int, float, int
        Optimisation settings.
    mu : float
        FedProx coefficient: adds ``mu/2 * ||theta - theta_global||^2`` to the loss.
    l2 : float
        Weight decay on ``W``.
    balance : float
        Class weights ``count^-balance`` (0 = natural, 1 = balanced); rare arrhythmias matter.
    seed : int
        Shuffling seed.
    """
    t0 = time.perf_counter()
    n, n_classes = len(labels), weight.shape[0]
    w0, b0 = weight.astype(np.float64), bias.astype(np.float64)
    w, b = w0.copy(), b0.copy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    cw = class_weights(labels, n_classes, balance).astype(np.float64)
    x = emb.astype(np.float64)
    onehot = np.eye(n_classes)[labels]
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            p = head_probs(x[idx], w, b).astype(np.float64)
            sw = cw[labels[idx]][:, None]
            g = (p - onehot[idx]) * sw / max(1.0, float(np.sum(sw)))
            gw = g.T @ x[idx] + l2 * w + mu * (w - w0)
            gb = g.sum(axis=0) + mu * (b - b0)
            vw = 0.9 * vw + gw
            vb = 0.9 * vb + gb
            w -= lr * vw
            b -= lr * vb
    p = head_probs(x, w, b).astype(np.float64)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(n), labels], 1e-12, None)))) if n else 0.0
    acc = float(np.mean(np.argmax(p, axis=1) == labels)) if n else 0.0
    return HeadFit(
        w.astype(np.float32), b.astype(np.float32), loss, acc, n, time.perf_counter() - t0
    )


def compress_delta(delta: Tensors, max_error: float) -> tuple[str, float]:
    """Choose the update compression: ``int8`` if its relative L2 error is within
    ``max_error``, else ``none``. Returns (compression, measured error)."""
    specs, blob = pack_tensors(delta, "int8")
    err = compression_error(delta, unpack_tensors(specs, blob))
    if err <= max_error:
        return "int8", err
    _LOGGER.info("int8 delta error %.4f above %.4f: sending float32", err, max_error)
    return "none", 0.0


def head_update(
    *,
    round_id: str,
    client_id: str,
    base_version: str,
    global_tensors: Tensors,
    emb: F32,
    labels: npt.NDArray[np.int64],
    config: RoundConfig,
    max_compression_error: float = 0.02,
    seed: int = 0,
) -> tuple[ClientUpdate, HeadFit]:
    """Train the head on local embeddings and build the (compressed, clipped) update."""
    fit = train_head(
        emb,
        labels,
        global_tensors[HEAD_W],
        global_tensors[HEAD_B],
        epochs=config.local_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        mu=config.mu,
        seed=seed,
    )
    delta: Tensors = {
        HEAD_W: (fit.weight - global_tensors[HEAD_W]).astype(np.float32),
        HEAD_B: (fit.bias - global_tensors[HEAD_B]).astype(np.float32),
    }
    if config.clip_norm > 0:
        norm = float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in delta.values())))
        if norm > config.clip_norm:
            delta = {
                k: (v * (config.clip_norm / norm)).astype(np.float32) for k, v in delta.items()
            }
    compression, err = (
        compress_delta(delta, max_compression_error)
        if config.compression == "int8"
        else ("none", 0.0)
    )
    update = ClientUpdate(
        round_id=round_id,
        client_id=client_id,
        base_version=base_version,
        n_examples=fit.n_examples,
        delta=delta,
        compression=compression,
        compression_error=err,
        metrics={"loss": fit.loss, "accuracy": fit.accuracy, "train_s": fit.seconds},
    )
    return update, fit


class OnnxEmbedder:
    """onnxruntime adapter: the ``embedding`` output of a beat model (single-threaded)."""

    def __init__(self, model: bytes | Path, output: str = "embedding") -> None:
        import onnxruntime as ort  # adapter import: keeps the pure functions above light

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        src = model if isinstance(model, bytes) else str(model)
        self._session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        self._output = output
        self.input_names = [i.name for i in self._session.get_inputs()]
        # Channels (axis 1) each input expects; extra derived channels a loader adds are cut.
        self._channels = {
            i.name: int(i.shape[1])
            for i in self._session.get_inputs()
            if len(i.shape) == 3 and isinstance(i.shape[1], int)
        }

    def embed(self, inputs: Mapping[str, npt.NDArray[np.float32]], batch: int = 1024) -> F32:
        """Embeddings (n, E) of the inputs, in batches of ``batch`` examples."""
        n = len(next(iter(inputs.values())))
        outs = []
        for s in range(0, n, batch):
            feed = {
                k: np.ascontiguousarray(
                    inputs[k][s : s + batch, : self._channels[k]]
                    if k in self._channels
                    else inputs[k][s : s + batch],
                    np.float32,
                )
                for k in self.input_names
            }
            outs.append(self._session.run([self._output], feed)[0])
        if not outs:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(outs).astype(np.float32)
