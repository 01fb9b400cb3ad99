"""Polyphase export: same function as the torch net, the expected graph, plain fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.export import export_onnx, phase_schedule, polyphase_net
from models.nets import SignalNet, build_net
from models.predict import onnx_session
from models.tasks.base import NetSpec


def trained_like(spec: NetSpec, channels: int, length: int, features: int) -> SignalNet:
    """A net with non-trivial BatchNorm statistics (folding them is part of the rewrite)."""
    torch.manual_seed(0)
    net = build_net(spec, channels, length, features, 5)
    gen = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            size = module.num_features
            module.running_mean = 0.3 * torch.randn(size, generator=gen)
            module.running_var = 0.5 + torch.rand(size, generator=gen)
            module.weight.data = 0.5 + torch.rand(size, generator=gen)
            module.bias.data = 0.2 * torch.randn(size, generator=gen)
    return net.eval()


def inputs(net: SignalNet, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    signal = torch.randn(n, net.in_channels, net.length, generator=gen)
    return signal, torch.rand(n, net.n_features, generator=gen) + 0.5


@pytest.mark.parametrize(
    ("widths", "kernel", "channels", "length", "features", "phases"),
    [
        ((16, 24, 32, 32), 7, 2, 96, 8, None),  # the beat student, default layout
        ((16, 24, 32, 32), 7, 2, 96, 8, (4, 2, 2, 1)),  # the earlier default
        ((16, 24, 32, 32), 7, 2, 96, 8, (4, 4, 4, 2)),
        ((8, 16, 16, 24, 24), 7, 1, 320, 16, None),  # five stages
        ((4, 8), 5, 1, 32, 2, None),
        ((6,), 3, 3, 40, 0, None),  # one stage, no features, 3 -> 4 padded input channels
    ],
)
def test_polyphase_net_computes_the_same_function(
    widths: tuple[int, ...],
    kernel: int,
    channels: int,
    length: int,
    features: int,
    phases: tuple[int, ...] | None,
) -> None:
    # Prepare
    net = trained_like(NetSpec("cnn", widths, kernel, 8), channels, length, features)
    signal, feats = inputs(net)
    # Execute
    fast = polyphase_net(net, phases)
    # Verify
    assert fast is not None
    with torch.no_grad():
        for mine, ref in zip(fast(signal, feats), net(signal, feats), strict=True):
            torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
    assert len(fast.stages) == len(widths)


def test_export_graph_is_polyphase_and_matches_torch(tmp_path: Path) -> None:
    # Prepare
    net = trained_like(NetSpec("cnn", (16, 24, 32, 32), 7, 32, feature_dim=32), 2, 96, 8)
    signal, feats = inputs(net, 37)
    # Execute
    names = export_onnx(net, tmp_path / "m.onnx", ("beat", "rr"))
    probs, emb = onnx_session(tmp_path / "m.onnx").run(
        ["probs", "embedding"], {"beat": signal.numpy(), "rr": feats.numpy()}
    )
    # Verify: same outputs and contract; strided convs and Max replace three MaxPools
    with torch.no_grad():
        logits, ref_emb = net(signal, feats)
    assert names == ["beat", "rr"]
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-4)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = [n.op_type for n in graph.node]
    strides = [
        a.ints[0]
        for n in graph.node
        if n.op_type == "Conv"
        for a in n.attribute
        if a.name == "strides"
    ]
    assert ops.count("Max") == 2 and ops.count("MaxPool") == 2
    assert strides == [2, 2, 1, 1]  # phase_schedule(4) == (2, 2, 1, 1)
    assert phase_schedule(4) == (2, 2, 1, 1)


def test_nets_without_the_layout_export_plain(tmp_path: Path) -> None:
    # Prepare: residual stages, and a length the phases do not divide
    resnet = trained_like(NetSpec("resnet", (4, 8), 5, 8), 1, 32, 2)
    odd = trained_like(NetSpec("cnn", (4, 8), 5, 8), 1, 30, 2)
    plain = trained_like(NetSpec("cnn", (4, 8), 5, 8), 1, 32, 2)
    # Execute
    exported = {}
    for name, net, poly in (("resnet", resnet, True), ("odd", odd, True), ("off", plain, False)):
        export_onnx(net, tmp_path / f"{name}.onnx", ("beat", "rr"), polyphase=poly)
        exported[name] = [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node]
    # Verify
    assert polyphase_net(resnet) is None and polyphase_net(odd) is None
    assert all("Max" not in ops and "MaxPool" in ops for ops in exported.values())


@pytest.mark.parametrize(
    ("length", "phases"),
    [
        (96, (2, 2)),  # wrong length of schedule
        (96, (4, 1, 1, 1, 1)),
        (96, (2, 3, 1, 1)),  # odd phase count: MaxPool(2) needs two halves
        (96, (4, 4, 1, 1)),  # 1 output phase from 2 input phases: not a multiple
        (96, (0, 1, 1, 1)),  # zero
        (90, (4, 2, 1, 1)),  # 4 phases do not divide 90 samples
        (90, (2, 4, 1, 1)),  # 4 phases do not divide the second stage's 45
    ],
)
def test_invalid_phase_schedules_give_no_polyphase_net(
    length: int, phases: tuple[int, ...]
) -> None:
    # Prepare: a four-stage net
    net = trained_like(NetSpec("cnn", (4, 8, 8, 8), 5, 8), 1, length, 2)
    # Execute / Verify
    assert polyphase_net(net, phases) is None
    if length == 90:  # the same net does have a layout: the rejection is the length's
        assert polyphase_net(net, (2, 1, 1, 1)) is not None
