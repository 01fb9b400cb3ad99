"""Test doubles for the edge agent: a tiny ONNX beat model with a card, synthetic ECG, a
threshold peak detector, a fake uplink. No torch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from common.model_card import file_sha256
from common.signals.beats import BeatSpec
from common.types import SignalChunk, StreamKind

CLASSES = ("N", "S", "V", "F", "Q")
SPEC = BeatSpec(
    sampling_rate_hz=128.0,
    before_samples=32,
    after_samples=64,
    rr_features=("rr_pre", "rr_post", "rr_local", "rr_pre_local_ratio"),
)
EMB = 8


def build_beat_model(folder: Path, spec: BeatSpec = SPEC, version: str = "test-1") -> Path:
    """A tiny ONNX model following the beat card's I/O contract.

    ``probs = softmax(embedding @ W.T + b + features @ F)``; the features term makes a beat
    with ``rr_pre_local_ratio < 0.8`` (premature) come out as ``V``, anything else as ``N``, so
    tests know the right answer.
    """
    L, K = spec.window_len, len(spec.rr_features)
    rng = np.random.default_rng(0)
    w1 = (rng.normal(0, 0.01, (L, EMB))).astype(np.float32)
    head_w = np.zeros((len(CLASSES), EMB), np.float32)
    head_b = np.array([0.0, -5.0, 0.0, -5.0, -5.0], np.float32)
    fw = np.zeros((K, len(CLASSES)), np.float32)
    ratio = spec.rr_features.index("rr_pre_local_ratio")
    # logit_N - logit_V = 40 * (ratio - 0.8): premature beats are V
    fw[ratio, 0] = 20.0
    fw[ratio, 2] = -20.0
    fb = np.array([-16.0, 0.0, 16.0, 0.0, 0.0], np.float32)
    nodes = [
        helper.make_node("Flatten", ["signal"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["embedding"]),
        helper.make_node("Gemm", ["embedding", "head_w", "head_b"], ["logits0"], transB=1),
        helper.make_node("MatMul", ["features", "fw"], ["flog"]),
        helper.make_node("Add", ["logits0", "flog"], ["logits1"]),
        helper.make_node("Add", ["logits1", "fb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in ((w1, "w1"), (head_w, "head_w"), (head_b, "head_b"), (fw, "fw"), (fb, "fb"))
    ]
    graph = helper.make_graph(
        nodes,
        "beat",
        [
            helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["N", 1, L]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", K]),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(CLASSES)]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMB]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "beat.onnx"
    onnx.save(model, path)
    np.savez(folder / "beat.head.npz", weight=head_w, bias=head_b)
    card = {
        "task": "beat",
        "version": version,
        "classes": list(CLASSES),
        "description": "test double",
        "input_contract": {
            "sampling_rate_hz": spec.sampling_rate_hz,
            "window_before": spec.before_samples,
            "window_after": spec.after_samples,
            "alignment": "R peak at window_before",
            "lead": "MLII",
            "units": "zscore",
            "filter": "bandpass",
            "normalisation": spec.normalization,
            "resampling": "polyphase",
            "features": [{"name": n, "unit": "s", "description": n} for n in spec.rr_features],
            "parameters": {"beat_spec": spec.to_dict()},
        },
        "onnx": {
            "inputs": [
                {"name": "signal", "shape": ["N", 1, L]},
                {"name": "features", "shape": ["N", K]},
            ],
            "outputs": [
                {"name": "probs", "shape": ["N", 5]},
                {"name": "embedding", "shape": ["N", EMB]},
            ],
        },
        "head": {
            "file": "beat.head.npz",
            "weight_key": "weight",
            "bias_key": "bias",
            "embedding_dim": EMB,
            "n_classes": 5,
        },
        "training": {"data": "none", "split": "none", "seed": 0, "command": "test"},
        "metrics": {"fp32": {"per_class": {}}},
        "artifact": {
            "file": "beat.onnx",
            "size_bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "quantization": "fp32",
        },
    }
    (folder / "beat.card.json").write_text(json.dumps(card))
    return path


def synthetic_ecg(
    rr_s: list[float], fs: float = 360.0, seed: int = 0, lead_in_s: float = 1.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Gaussian QRS-like spikes (1 mV) after the given RR intervals, plus noise (µV).

    Returns the signal, shape (n,), and the true R-peak sample indices.
    """
    rng = np.random.default_rng(seed)
    t_peaks = lead_in_s + np.concatenate([[0.0], np.cumsum(rr_s)])
    n = int((t_peaks[-1] + 1.5) * fs)
    x = rng.normal(0, 10.0, n)
    t = np.arange(n) / fs
    peaks = np.round(t_peaks * fs).astype(np.int64)
    for tp in t_peaks:
        sl = slice(max(0, int((tp - 0.1) * fs)), min(n, int((tp + 0.1) * fs)))
        x[sl] += 1000.0 * np.exp(-0.5 * ((t[sl] - tp) / 0.012) ** 2)
    return x, peaks


def chunks_of(
    x: npt.NDArray[np.float64],
    fs: float,
    chunk: int,
    t0_ns: int = 1_700_000_000 * 10**9,
    seq0: int = 0,
) -> list[SignalChunk]:
    """Split a signal into ECG chunks of ``chunk`` samples with consistent seq and t0."""
    out = []
    for s in range(0, x.size, chunk):
        seg = x[s : s + chunk]
        out.append(
            SignalChunk(
                StreamKind.ECG,
                fs,
                t0_ns + round((seq0 + s) * 1e9 / fs),
                seg[:, None].copy(),
                seq0 + s,
            )
        )
    return out


class ThresholdDetector:
    """A streaming detector for the synthetic spikes: local maxima above 500 µV, confirmed
    0.25 s later (so it behaves like a real detector with look-ahead)."""

    def __init__(self, fs: float) -> None:
        self.fs = fs
        self._buf = np.zeros(0)
        self._start = 0
        self._last = -(10**9)

    def process(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        self._buf = np.concatenate([self._buf, x])
        hold = int(0.25 * self.fs)
        limit = self._buf.size - hold
        found = []
        i = 1
        while i < limit:
            v = self._buf[i]
            if v > 500 and v >= self._buf[i - 1] and v >= self._buf[i + 1]:
                p = self._start + i
                if p - self._last > 0.2 * self.fs:
                    found.append(p)
                    self._last = p
            i += 1
        keep = max(limit - 1, 0)
        self._start += keep
        self._buf = self._buf[keep:]
        return np.array(found, np.int64)

    def flush(self) -> npt.NDArray[np.int64]:
        return np.zeros(0, np.int64)


class ListSource:
    """A source replaying a list of chunks."""

    def __init__(self, chunks: list[SignalChunk], pause_s: float = 0.0) -> None:
        self._chunks = chunks
        self._pause = pause_s

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        for c in self._chunks:
            if self._pause:
                await asyncio.sleep(self._pause)
            yield c


class FakeUplink:
    """In-memory uplink: ``connected`` is switchable, acks are delivered on the loop."""

    def __init__(self, connected: bool = True, refuse: bool = False) -> None:
        self.connected = connected
        self.refuse = refuse
        self.reliable: list[tuple[str, bytes]] = []
        self.live: list[tuple[str, bytes]] = []
        self.status: list[tuple[bool, str]] = []  # (online, detail) as published
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def publish_reliable(self, topic: str, payload: bytes, on_ack: Callable[[bool], None]) -> bool:
        if not self.connected:
            return False
        self.reliable.append((topic, payload))
        asyncio.get_running_loop().call_soon(on_ack, not self.refuse)
        return True

    def publish_live(self, topic: str, payload: bytes) -> None:
        if self.connected:
            self.live.append((topic, payload))

    def publish_status(self, online: bool, detail: str) -> None:
        if self.connected:
            self.status.append((online, detail))

    async def inbound(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            yield await self.queue.get()
