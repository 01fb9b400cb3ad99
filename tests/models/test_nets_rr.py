"""RR-expert net kinds (``cnn_rr`` / ``resnet_rr``): embedding layout, aux loss, export, reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.export import export_onnx, save_checkpoint
from models.nets import RR_EXPERT_DIM, build_net
from models.pipeline import check_parity
from models.predict import load_checkpoint
from models.tasks.base import NetSpec, TaskData, TrainSpec
from models.train import fit, predict_logits


def rr_data(n: int, seed: int) -> TaskData:
    """Two classes that differ ONLY in the ratio feature (premature = ratio 0.6, else 1.0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = rng.normal(0, 0.5, (n, 2, 32)).astype(np.float32)
    rr = rng.uniform(0.6, 1.2, n)
    ratio = np.where(labels == 1, 0.6, 1.0) * rng.uniform(0.95, 1.05, n)
    features = np.stack([rr * ratio, rr, ratio], 1).astype(np.float32)
    return TaskData(signal, features, labels.astype(np.int64), np.array(["p"] * n))


@pytest.mark.parametrize("kind", ["cnn_rr", "resnet_rr"])
def test_rr_expert_units_depend_only_on_features(kind: str) -> None:
    # Setup
    torch.manual_seed(0)
    net = build_net(NetSpec(kind, (4, 4), 3, 16, dropout=0.0, feature_dim=4), 2, 32, 3, 2).eval()
    data = rr_data(8, 0)
    signal, feats = torch.from_numpy(data.signal), torch.from_numpy(data.features)
    # Execute
    _, emb = net(signal, feats)
    _, emb_other_signal = net(signal * -3.0 + 1.0, feats)
    # Verify: the last RR_EXPERT_DIM units ignore the waveform, the others do not
    assert emb.shape == (8, 16)
    torch.testing.assert_close(emb[:, -RR_EXPERT_DIM:], emb_other_signal[:, -RR_EXPERT_DIM:])
    assert not torch.allclose(emb[:, :-RR_EXPERT_DIM], emb_other_signal[:, :-RR_EXPERT_DIM])


def test_plain_kind_has_no_auxiliary_loss() -> None:
    net = build_net(NetSpec("cnn", (4,), 3, 8), 2, 32, 3, 2)
    data = rr_data(4, 0)
    net(torch.from_numpy(data.signal), torch.from_numpy(data.features))
    assert net.auxiliary_loss(torch.from_numpy(data.labels)) is None


def test_unknown_kind_and_too_small_embedding_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown net kind"):
        build_net(NetSpec("mlp", (4,), 3, 16), 2, 32, 3, 2)
    with pytest.raises(ValueError, match="embedding_dim"):
        build_net(NetSpec("cnn_rr", (4,), 3, RR_EXPERT_DIM), 2, 32, 3, 2)


def test_fit_trains_the_rr_head_and_learns_a_ratio_rule() -> None:
    # Setup
    torch.manual_seed(0)
    net = build_net(NetSpec("cnn_rr", (4, 4), 3, 16, dropout=0.0, feature_dim=4), 2, 32, 3, 2)
    assert net.rr_head is not None
    before = net.rr_head.weight.detach().clone()
    spec = TrainSpec(epochs=4, batch_size=32, lr=1e-2, steps_per_epoch=20, augment=False)
    # Execute
    fit(net, rr_data(400, 1), spec, seed=0, n_classes=2)
    test = rr_data(200, 2)
    acc = float(np.mean(predict_logits(net, test).argmax(1) == test.labels))
    # Verify: the auxiliary loss reached the RR-only head, and the ratio rule was learnt
    assert not torch.allclose(before, net.rr_head.weight)
    assert acc > 0.95


def test_rr_kind_exports_with_parity_and_reloads_after_training(tmp_path: Path) -> None:
    # Setup
    torch.manual_seed(0)
    spec = NetSpec("cnn_rr", (4, 4), 3, 16, dropout=0.0, feature_dim=4)
    net = build_net(spec, 2, 32, 3, 2).eval()
    data = rr_data(64, 3)
    meta = {
        "net_spec": {**spec.__dict__, "widths": list(spec.widths)},
        "in_channels": 2,
        "length": 32,
        "n_features": 3,
        "n_classes": 2,
    }
    net.train()
    net(torch.from_numpy(data.signal), torch.from_numpy(data.features))  # leaves a graph tensor
    net.eval()
    # Execute
    export_onnx(net, tmp_path / "m.onnx", ("beat", "rr"))
    save_checkpoint(net, tmp_path / "m.pt", meta)
    again = load_checkpoint(tmp_path / "m.pt")
    # Verify
    assert check_parity(net, tmp_path / "m.onnx", data) <= 1e-4
    np.testing.assert_allclose(predict_logits(again, data), predict_logits(net, data), atol=1e-6)
