"""Polyphase export: same function as the torch net, the expected graph, plain fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.export import export_onnx
from models.nets import SignalNet, build_net
from models.polyphase import _InputPhases, default_layouts, polyphase_net
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
    ("widths", "kernel", "channels", "length", "features", "phases", "split"),
    [
        ((16, 24, 32, 32), 7, 2, 96, 8, None, 1),  # the beat student, default layout
        ((16, 24, 32, 32), 7, 2, 96, 8, (2, 2, 1, 1), 1),  # the earlier defaults
        ((16, 24, 32, 32), 7, 2, 96, 8, (4, 2, 2, 1), 1),
        ((16, 24, 32, 32), 7, 2, 96, 8, (4, 4, 4, 2), 1),
        ((16, 24, 32, 32), 7, 2, 96, 8, (2, 2, 2, 1), 2),  # input split in 2: 4 channels
        ((16, 24, 32, 32), 7, 2, 96, 8, (8, 4, 2, 1), 8),
        ((16, 24, 32, 32), 7, 1, 96, 8, (2, 2, 1, 1), 2),  # 1 x 2 -> 4 padded channels
        ((8, 16, 16, 24, 24), 7, 1, 320, 16, None, 1),  # five stages
        ((4, 8), 5, 1, 32, 2, None, 1),
        ((6,), 3, 3, 40, 0, None, 1),  # one stage, no features, 3 x 4 = 12 input channels
        ((6,), 3, 3, 40, 0, (2,), 1),  # 3 -> 4 padded input channels
    ],
)
def test_polyphase_net_computes_the_same_function(
    widths: tuple[int, ...],
    kernel: int,
    channels: int,
    length: int,
    features: int,
    phases: tuple[int, ...] | None,
    split: int,
) -> None:
    # Prepare
    net = trained_like(NetSpec("cnn", widths, kernel, 8), channels, length, features)
    signal, feats = inputs(net)
    # Execute
    fast = polyphase_net(net, phases, split)
    # Verify
    assert fast is not None
    with torch.no_grad():
        for mine, ref in zip(fast(signal, feats), net(signal, feats), strict=True):
            torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
    split_first = isinstance(fast.stages[0], _InputPhases)
    assert split_first == (phases is None or split > 1)  # every default here splits the input
    assert len(fast.stages) == len(widths) + split_first


def test_default_layout_falls_back_when_the_split_does_not_fit() -> None:
    # Prepare: 100 samples: 4 input phases fit, but the third stage's 25 cannot take 2 phases
    net = trained_like(NetSpec("cnn", (4, 8, 8, 8), 5, 8), 1, 100, 2)
    signal, feats = inputs(net)
    # Execute
    fast = polyphase_net(net)
    # Verify: the second default layout, (2, 2, 1, 1) on the unsplit input
    assert polyphase_net(net, *default_layouts(4)[0]) is None
    assert default_layouts(4)[1] == ((2, 2, 1, 1), 1)
    assert fast is not None and not isinstance(fast.stages[0], _InputPhases)
    with torch.no_grad():
        torch.testing.assert_close(fast(signal, feats)[0], net(signal, feats)[0])


def test_export_graph_is_polyphase_and_matches_torch(tmp_path: Path) -> None:
    # Prepare
    net = trained_like(NetSpec("cnn", (16, 24, 32, 32), 7, 32, feature_dim=32), 2, 96, 8)
    signal, feats = inputs(net, 37)
    # Execute
    names = export_onnx(net, tmp_path / "m.onnx", ("beat", "rr"))
    probs, emb = onnx_session(tmp_path / "m.onnx").run(
        ["probs", "embedding"], {"beat": signal.numpy(), "rr": feats.numpy()}
    )
    # Verify: same outputs and contract; the input split in 4 phases, then phase convs with Max
    # in place of three MaxPools
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
    assert ops.count("Max") == 3 and ops.count("MaxPool") == 1
    assert ops.index("Reshape") < ops.index("Conv")  # the input split
    # (4, 2, 2, 1) output phases from 4, 2, 1, 1 input phases: strides 1, 1, 2, 1
    assert strides == [1, 1, 2, 1]
    assert default_layouts(4)[0] == ((4, 2, 2, 1), 4)


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
    ("length", "phases", "split"),
    [
        (96, (2, 2), 1),  # wrong length of schedule
        (96, (4, 1, 1, 1, 1), 1),
        (96, (2, 3, 1, 1), 1),  # odd phase count: MaxPool(2) needs two halves
        (96, (4, 4, 1, 1), 1),  # 1 output phase from 2 input phases: not a multiple
        (96, (0, 1, 1, 1), 1),  # zero
        (90, (4, 2, 1, 1), 1),  # 4 phases do not divide 90 samples
        (90, (2, 4, 1, 1), 1),  # 4 phases do not divide the second stage's 45
        (96, (2, 2, 1, 1), 4),  # 2 output phases from 4 input phases
        (96, (4, 2, 2, 1), 0),  # no input phases
        (90, (4, 2, 2, 1), 4),  # 4 input phases do not divide 90 samples
    ],
)
def test_invalid_phase_schedules_give_no_polyphase_net(
    length: int, phases: tuple[int, ...], split: int
) -> None:
    # Prepare: a four-stage net
    net = trained_like(NetSpec("cnn", (4, 8, 8, 8), 5, 8), 1, length, 2)
    # Execute / Verify
    assert polyphase_net(net, phases, split) is None
    if length == 90:  # the same net does have a layout: the rejection is the length's
        assert polyphase_net(net, (2, 1, 1, 1)) is not None
