"""Test helpers shared by the federated-learning suites: a tiny beat-like ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import fl_protocol as fl

L, K, E, C = 16, 2, 8, 3


def tiny_beat_onnx(seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """ONNX with inputs ``beat`` (N, 1, L), ``rr`` (N, K) and outputs ``probs`` (N, C),
    ``embedding`` (N, E); returns (model bytes, head tensors)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (L + K, E)).astype(np.float32)
    b1 = np.zeros(E, np.float32)
    hw = rng.normal(0, 0.1, (C, E)).astype(np.float32)
    hb = np.zeros(C, np.float32)
    nodes = [
        helper.make_node("Flatten", ["beat"], ["flat"], axis=1),
        helper.make_node("Concat", ["flat", "rr"], ["x"], axis=1),
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["embedding"]),
        helper.make_node("Gemm", ["embedding", "head_w", "head_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_beat",
        [
            helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["N", 1, L]),
            helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["N", K]),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", C]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", E]),
        ],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (hw, "head_w"), (hb, "head_b"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), {"head.weight": hw, "head.bias": hb}


def tiny_dataset(n: int, seed: int, shift: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs whose class is readable from the beat's mean level; ``shift`` makes patients differ."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    beat = rng.normal(0, 0.3, (n, 1, L)).astype(np.float32) + (labels[:, None, None] - 1.0 + shift)
    rr = rng.normal(1, 0.1, (n, K)).astype(np.float32)
    return {"beat": beat.astype(np.float32), "rr": rr}, labels.astype(np.int64)


def initial_release() -> fl.ModelRelease:
    """Version-0 release of the tiny model (head tensors + ONNX file)."""

    model, head = tiny_beat_onnx()
    return fl.ModelRelease("v0", 0, head, {"model.onnx": model, "model.card.json": b"{}"}, {})


def write_client_data(folder: Path, n_clients: int, n: int = 300) -> list[str]:
    """One npz of labelled tiny beats per simulated client; returns the client ids."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n_clients):
        x, y = tiny_dataset(n, 100 + i, shift=0.1 * (i % 3))
        cid = f"sim-{i:03d}"
        np.savez(folder / f"{cid}.npz", beat=x["beat"], rr=x["rr"], labels=y)
        ids.append(cid)
    return ids
