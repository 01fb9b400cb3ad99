"""int8 QDQ details: U8 activations, per-channel S8 weights, Max run on int8 tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from models.export import export_onnx
from models.nets import build_net
from models.predict import onnx_session
from models.quantize import int8_max, quantize
from models.tasks.base import NetSpec
from models.weight_range import WEIGHT_QMAX, int8_weight_peak


def _max_graph(scale_b: float, via: str | None = None, max_out: bool = False) -> onnx.ModelProto:
    """``x, y`` float -> Q -> DQ -> Max [-> ``via``] -> Q -> DQ -> ``z``; ``y``'s scale is
    ``scale_b``; ``max_out`` also makes the Max output a graph output."""
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "sa"),
        numpy_helper.from_array(np.array(scale_b, np.float32), "sb"),
        numpy_helper.from_array(np.array(0.07, np.float32), "so"),
        numpy_helper.from_array(np.array(10, np.uint8), "za"),
        numpy_helper.from_array(np.array(10, np.uint8), "zb"),
        numpy_helper.from_array(np.array(3, np.uint8), "zo"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["xq"]),
        helper.make_node("QuantizeLinear", ["y", "sb", "zb"], ["yq"]),
        helper.make_node("DequantizeLinear", ["xq", "sa", "za"], ["xd"]),
        helper.make_node("DequantizeLinear", ["yq", "sb", "zb"], ["yd"]),
        helper.make_node("Max", ["xd", "yd"], ["m0" if via else "m"]),
        helper.make_node("QuantizeLinear", ["m", "so", "zo"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "so", "zo"], ["z"]),
    ]
    if via:  # Flatten (N, C) -> (N, C): a layout op between the Max and its quantization
        nodes.insert(5, helper.make_node(via, ["m0"], ["m"], axis=1))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 6]) for n in ("x", "y", "z")]
    outputs = io[2:] + ([helper.make_tensor_value_info("m0", TensorProto.FLOAT, [4, 6])] * max_out)
    graph = helper.make_graph(nodes, "g", io[:2], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["z"], feed)[0])


def test_int8_max_is_exact_and_needs_shared_parameters() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    feed = {k: rng.uniform(-1, 8, (4, 6)).astype(np.float32) for k in ("x", "y")}
    same, other = _max_graph(0.05), _max_graph(0.06)
    # Execute
    before = _run(same, feed)
    rewritten, untouched = int8_max(same), int8_max(other)
    after = _run(same, feed)
    # Verify: the Max reads the int8 tensors; the result is the max of the dequantized inputs
    ops = [n.op_type for n in same.graph.node]
    assert (rewritten, untouched) == (1, 0)
    assert ops.count("DequantizeLinear") == 1 and ops.count("QuantizeLinear") == 2
    assert {i.name for i in same.graph.initializer} == {"sa", "sb", "za", "zb"}
    expected = np.maximum(
        (np.clip(np.round(feed["x"] / 0.05) + 10, 0, 255) - 10) * 0.05,
        (np.clip(np.round(feed["y"] / 0.05) + 10, 0, 255) - 10) * 0.05,
    )
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(after - before).max() <= 0.07 / 2 + 1e-6  # only the dropped requantization
    assert len(other.graph.node) == 7


def test_int8_max_looks_through_a_flatten_but_keeps_float_graph_outputs() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    feed = {k: rng.uniform(-1, 8, (4, 6)).astype(np.float32) for k in ("x", "y")}
    flat, exposed = _max_graph(0.05, "Flatten"), _max_graph(0.05, "Flatten", max_out=True)
    # Execute
    before = _run(flat, feed)
    rewritten, untouched = int8_max(flat), int8_max(exposed)
    after = _run(flat, feed)
    # Verify: Max and Flatten run on the quantized tensors, the same values as the plain case
    ops = [n.op_type for n in flat.graph.node]
    assert (rewritten, untouched) == (1, 0)
    assert ops == ["QuantizeLinear", "QuantizeLinear", "Max", "Flatten", "DequantizeLinear"]
    expected = np.maximum(
        (np.clip(np.round(feed["x"] / 0.05) + 10, 0, 255) - 10) * 0.05,
        (np.clip(np.round(feed["y"] / 0.05) + 10, 0, 255) - 10) * 0.05,
    )
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(after - before).max() <= 0.07 / 2 + 1e-6
    assert len(exposed.graph.node) == 8


def test_quantized_polyphase_model_is_u8s8_per_channel_and_close_to_fp32(tmp_path: Path) -> None:
    # Prepare
    torch.manual_seed(0)
    net = build_net(NetSpec("cnn", (8, 16, 16), 7, 16, feature_dim=8), 2, 64, 4, 3).eval()
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(300, 2, 64)).astype(np.float32)
    feats = rng.uniform(0.5, 1.5, (300, 4)).astype(np.float32)
    export_onnx(net, tmp_path / "f.onnx", ("beat", "rr"))
    # Execute
    quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", {"beat": signal[:200], "rr": feats[:200]})
    # Verify
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant and all(inits[n.input[2]].dtype == np.uint8 for n in quant)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        weight_dq = producers[conv.input[1]]
        scale, zero = inits[weight_dq.input[1]], inits[weight_dq.input[2]]
        assert inits[weight_dq.input[0]].dtype == np.int8 and not zero.any()
        assert scale.shape == (inits[weight_dq.input[0]].shape[0],)  # one scale per channel
    assert int8_weight_peak(model) == WEIGHT_QMAX  # 7-bit weights (models.weight_range)
    for node in (n for n in model.graph.node if n.op_type == "Max"):
        assert all(producers[i].op_type != "DequantizeLinear" for i in node.input)
    feed = {"beat": signal[200:], "rr": feats[200:]}
    p32 = onnx_session(tmp_path / "f.onnx").run(["probs"], feed)[0]
    p8 = onnx_session(tmp_path / "q.onnx").run(["probs"], feed)[0]
    assert np.abs(p32 - p8).max() < 0.1
    assert (p32.argmax(1) == p8.argmax(1)).mean() > 0.95
