"""Tiny end-to-end runs: train -> distil -> export (parity) -> int8 QDQ -> card -> evaluate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from common.model_card import load_card
from models.distill import distill
from models.export import export_onnx, save_head
from models.nets import build_net
from models.pipeline import TrainRequest, check_parity, train_task
from models.predict import load_predictor, onnx_session
from models.quantize import calibration_inputs, head_node_names, quantize, stratified_indices
from models.tasks.base import NetSpec, Task, TaskData, TrainSpec
from models.tasks.beat import contract as beat_contract


def synthetic(n: int, seed: int) -> TaskData:
    """Three classes separable by a bump position and by the first feature."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    signal = rng.normal(0, 0.1, (n, 1, 32)).astype(np.float32)
    for i, y in enumerate(labels):
        signal[i, 0, 8 + 6 * y : 12 + 6 * y] += 2.0
    features = np.stack([labels + rng.normal(0, 0.2, n), rng.normal(size=n)], 1)
    groups = np.array([f"p{i % 6}" for i in range(n)])
    return TaskData(signal, features.astype(np.float32), labels.astype(np.int64), groups)


TINY = TrainSpec(epochs=2, batch_size=32, lr=1e-2, steps_per_epoch=15, augment=False)


def tiny_task() -> Task:
    return Task(
        name="toy",
        classes=("a", "b", "c"),
        description="synthetic smoke task",
        input_names=("beat", "rr"),
        splits={"train": "synthetic", "test": "synthetic"},
        train_split="train",
        test_split="test",
        load=lambda split, opts: synthetic(300, 0 if split == "train" else 1),
        contract=beat_contract,
        teacher=NetSpec("resnet", (8, 8), 5, 8),
        student=NetSpec("cnn", (4, 8), 5, 8),
        train=TINY,
        data_description="synthetic",
    )


def test_train_task_end_to_end(tmp_path: Path) -> None:
    # Execute
    summary = train_task(
        tiny_task(),
        TrainRequest(seed=0, out_dir=tmp_path, holdout=True, command="pytest"),
        {},
        None,
    )
    # Assert: files, card, learned something, int8 close to fp32
    card = load_card(tmp_path / "toy.card.json")
    assert (
        card.artifact.sha256 and card.artifact.size_bytes == (tmp_path / "toy.onnx").stat().st_size
    )
    assert [t.name for t in card.onnx.inputs] == ["beat", "rr"]
    assert [t.name for t in card.onnx.outputs] == ["probs", "embedding"]
    assert set(card.metrics) >= {"fp32", "int8", "teacher_fp32", "validation_int8"}
    assert card.training.command == "pytest"
    ev = summary["evaluations"]
    assert ev["fp32"]["accuracy"] > 0.6
    assert abs(ev["fp32"]["macro_f1"] - ev["int8"]["macro_f1"]) < 0.1
    assert card.head is not None
    head = np.load(tmp_path / card.head.file)
    assert head["W"].shape == (3, 8) and head["b"].shape == (3,)


def test_export_parity_and_qdq_quantization(tmp_path: Path) -> None:
    # Prepare
    torch.manual_seed(0)
    data = synthetic(200, 2)
    net = build_net(NetSpec("cnn", (4, 8), 5, 8), 1, 32, 2, 3)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "q.onnx"
    # Execute
    names = export_onnx(net, fp32, ("beat", "rr"))
    diff = check_parity(net, fp32, data)
    quantize(fp32, int8, calibration_inputs(data, names, per_class=20))
    # Assert
    assert diff < 1e-4
    model = onnx.load(str(int8))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    head = head_node_names(model)
    assert head  # the head Gemm stays float: its weight is a float initializer
    weights = {i.name: i.data_type for i in model.graph.initializer}
    (gemm,) = [n for n in model.graph.node if n.name == head[0]]
    assert weights[gemm.input[1]] == onnx.TensorProto.FLOAT
    assert max(len(name) for name in weights) <= 2  # internal names compacted (onnx_names)
    probs = load_predictor(int8)(data)
    assert probs.shape == (200, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # the stored head reproduces the int8 model's probs from its embedding (device head training)
    save_head(net, tmp_path / "m.head.npz")
    head_npz = np.load(tmp_path / "m.head.npz")
    emb = onnx_session(int8).run(["embedding"], {"beat": data.signal, "rr": data.features})[0]
    logits = emb @ head_npz["W"].T + head_npz["b"]
    mine = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(mine / mine.sum(1, keepdims=True), probs, atol=1e-5)


def test_stratified_calibration_covers_every_class() -> None:
    labels = np.array([0] * 100 + [1] * 3 + [2] * 10)
    idx = stratified_indices(labels, per_class=5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 5]


def test_distill_from_soft_targets_and_argument_checks() -> None:
    # Prepare
    data = synthetic(120, 3)
    net = build_net(NetSpec("cnn", (4,), 5, 8), 1, 32, 2, 3)
    soft = np.eye(3, dtype=np.float32)[data.labels] * 0.9 + 0.1 / 3
    # Execute
    hist = distill(net, data, TINY, soft_targets=soft, seed=1)
    # Assert
    assert len(hist.losses) == TINY.epochs and hist.losses[-1] < hist.losses[0]
    with pytest.raises(ValueError, match="exactly one"):
        distill(net, data, TINY, seed=1)
    with pytest.raises(ValueError, match="soft_targets must be"):
        distill(net, data, TINY, soft_targets=soft[:5], seed=1)


def test_task_with_n_and_s_classes_ships_the_rr_gate(tmp_path: Path) -> None:
    # Prepare: the toy task's classes renamed so that the pipeline fits and adds the RR gate
    from dataclasses import replace

    from models.rr_gate import RRGate

    task = replace(tiny_task(), name="toyrr", classes=("N", "S", "V"))
    # Execute
    summary = train_task(task, TrainRequest(seed=0, out_dir=tmp_path, command="pytest"), {}, None)
    # Assert: card carries the gate; the int8 probs are the head's softmax re-split by it
    card = load_card(tmp_path / "toyrr.card.json")
    gate = RRGate.from_dict(card.input_contract.parameters["rr_gate"])
    assert card.head is not None and "RR gate" in card.head.activation
    assert {"int8", "int8_without_gate"} <= set(summary["evaluations"])
    data = synthetic(100, 5)
    sess = onnx_session(tmp_path / "toyrr.onnx")
    probs, emb = sess.run(["probs", "embedding"], {"beat": data.signal, "rr": data.features})
    head = np.load(tmp_path / card.head.file)
    logits = emb @ head["W"].T + head["b"]
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, gate.apply(soft, data.features), atol=1e-5)
    # and it can be switched off
    req = TrainRequest(seed=0, out_dir=tmp_path / "off", command="pytest", rr_gate=False)
    off = train_task(task, req, {}, None)
    assert "int8_without_gate" not in off["evaluations"]


def test_train_task_adds_the_tasks_augmented_views(tmp_path: Path) -> None:
    # Prepare: a task whose views are the training records inverted
    calls: list[tuple[list[str], int]] = []

    def views(records: list[str], options: object, seed: int) -> TaskData:
        calls.append((records, seed))
        data = synthetic(300, 0)
        return TaskData(-data.signal, data.features, data.labels, data.groups)

    task = tiny_task()
    task = Task(**{**task.__dict__, "options": {"train_views": views}})
    # Execute
    req = TrainRequest(seed=3, out_dir=tmp_path / "a", command="pytest")
    with_views = train_task(task, req, {}, None)
    without = train_task(task, replace(req, out_dir=tmp_path / "b", views=False), {}, None)
    # Assert: the views were asked for the training records, with the seed, and changed the nets
    assert calls == [(sorted({f"p{i}" for i in range(6)}), 3)]
    card = load_card(tmp_path / "a" / "toy.card.json")
    assert "augmented views" in card.training.notes
    assert with_views["evaluations"]["fp32"] != without["evaluations"]["fp32"] or (
        (tmp_path / "a" / "toy.onnx").read_bytes() != (tmp_path / "b" / "toy.onnx").read_bytes()
    )
