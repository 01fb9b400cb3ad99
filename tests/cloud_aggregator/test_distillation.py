"""Server-side distillation of a federated model into a new int8 student (torch + MODELS)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cloud_aggregator.distillation import DistillSettings, distill_release
from common.fl_protocol import ModelRelease
from models.export import export_onnx
from models.nets import build_net
from models.tasks import get_task
from models.tasks.base import NetSpec, TaskData
from models.weight_range import WEIGHT_QMAX, int8_weight_peak


def test_distilled_release_is_a_working_int8_model_that_mimics_the_teacher(tmp_path: Path) -> None:
    # Prepare: a small teacher fitted to separable synthetic beats, exported to ONNX
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 600
    labels = rng.integers(0, 3, n).astype(np.int64)
    signal = (rng.normal(0, 0.3, (n, 1, 96)) + labels[:, None, None] - 1.0).astype(np.float32)
    features = rng.normal(1, 0.1, (n, 8)).astype(np.float32)
    data = TaskData(signal, features, labels, np.full(n, "r1").astype(np.str_))
    tiny = NetSpec("cnn", (4, 4), 5, 8, dropout=0.0, feature_dim=4)
    task = dataclasses.replace(get_task("beat"), student=tiny)
    teacher = build_net(tiny, 1, 96, 8, 5)
    opt = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for _ in range(60):
        logits, _ = teacher(torch.from_numpy(signal), torch.from_numpy(features))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher.eval()
    export_onnx(teacher, tmp_path / "t.onnx", ("beat", "rr"))
    release = ModelRelease(
        "v3", 4, {}, {"model.onnx": (tmp_path / "t.onnx").read_bytes()}, {"backbone_sha256": "old"}
    )
    # Execute
    out = distill_release(
        release, data, task, DistillSettings(epochs=3, steps_per_epoch=20, calibration_per_class=50)
    )
    # Assert: a new int8 backbone with its head, card and a high fidelity to the teacher
    assert (
        out.metrics["backbone_sha256"]
        == hashlib.sha256(out.files["model.onnx"]).hexdigest()
        != "old"
    )
    assert out.tensors["head.weight"].shape == (5, 8) and out.tensors["head.bias"].shape == (5,)
    assert out.metrics["distill_fidelity"] > 0.9
    card = json.loads(out.files["model.card.json"])
    assert card["head"]["embedding_dim"] == 8 and "distilled" in card["training"]["notes"]
    sess = ort.InferenceSession(out.files["model.onnx"], providers=["CPUExecutionProvider"])
    graph = onnx.load_from_string(out.files["model.onnx"])
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node)
    # 7-bit weights: a release answers the same on x86 CPUs with and without VNNI
    assert int8_weight_peak(graph) == WEIGHT_QMAX
    probs = sess.run(["probs"], {"beat": signal[:10], "rr": features[:10]})[0]
    assert probs.shape == (10, 5)
