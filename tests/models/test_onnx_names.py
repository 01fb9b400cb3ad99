"""Short internal ONNX names: same outputs, same contract names, fewer bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from models.export import export_onnx
from models.nets import build_net
from models.onnx_names import base36, compact_names
from models.tasks.base import NetSpec

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


def _outputs(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(x) for x in sess.run(None, feed)]


def test_base36_counts_without_gaps() -> None:
    assert [base36(i) for i in (0, 9, 10, 35, 36, 37, 36 * 36)] == [
        "0", "9", "a", "z", "10", "11", "100"
    ]  # fmt: skip


def _feed(model: onnx.ModelProto, n: int = 64) -> dict[str, np.ndarray]:
    """Random beats and RR features for the model's two inputs."""
    rng = np.random.default_rng(0)
    beat, rr = model.graph.input
    shape = [d.dim_value for d in beat.type.tensor_type.shape.dim[1:]]
    n_rr = rr.type.tensor_type.shape.dim[1].dim_value
    return {
        beat.name: rng.normal(size=(n, *shape)).astype(np.float32),
        rr.name: rng.uniform(0.3, 2.0, (n, n_rr)).astype(np.float32),
    }


def test_exported_model_gives_bit_identical_outputs_after_compaction(tmp_path: Path) -> None:
    # Prepare: a fresh export carries the module-path names (net.stages.0..., /net/...)
    torch.manual_seed(0)
    net = build_net(NetSpec("cnn", (8, 16, 16), 7, 16, feature_dim=8), 2, 64, 4, 5).eval()
    export_onnx(net, tmp_path / "m.onnx", ("beat", "rr"))
    model = onnx.load(str(tmp_path / "m.onnx"))
    original = onnx.ModelProto()
    original.CopyFrom(model)
    feed = _feed(model)
    # Execute
    saved = compact_names(model)
    # Verify: contract names kept, every other name short and unique, outputs bit-identical
    assert [v.name for v in model.graph.input] == [v.name for v in original.graph.input]
    assert [v.name for v in model.graph.output] == [v.name for v in original.graph.output]
    inits = [i.name for i in model.graph.initializer]
    assert len(set(inits)) == len(inits) and max(len(n) for n in inits) <= 2
    assert any(i.name.startswith("net.") for i in original.graph.initializer)
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)
    assert saved == original.ByteSize() - model.ByteSize() > 0
    onnx.checker.check_model(model)
    for a, b in zip(_outputs(original, feed), _outputs(model, feed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_shipped_beat_model_is_compacted_and_compaction_is_idempotent() -> None:
    # Prepare: the committed int8 student with its RR gate (written by quantize + rr gate)
    model = onnx.load(str(PRETRAINED / "beat.onnx"))
    before = model.SerializeToString()
    feed = _feed(model)
    reference = _outputs(model, feed)
    # Execute
    saved = compact_names(model)
    # Verify
    assert saved == 0 and model.SerializeToString() == before
    for a, b in zip(reference, _outputs(model, feed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_generated_names_never_take_a_contract_name() -> None:
    # Prepare: inputs and output named like the first counter values
    nodes = [
        helper.make_node("Add", ["0", "w"], ["t"]),
        helper.make_node("Mul", ["t", "1"], ["2"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("0", "1", "2")]
    w = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "w")
    model = helper.make_model(
        helper.make_graph(nodes, "g", io[:2], io[2:], [w]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    feed = {"0": np.ones(3, np.float32), "1": np.full(3, 2.0, np.float32)}
    # Execute
    compact_names(model)
    # Verify
    assert model.graph.initializer[0].name == "3"
    assert list(model.graph.node[0].output) == ["4"]
    np.testing.assert_array_equal(_outputs(model, feed)[0], [4.0, 6.0, 8.0])


def test_graph_with_a_subgraph_is_left_as_it_is() -> None:
    # Prepare: an If node whose branches are graphs
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value_floats=[1.0])], "b", [], [out]
    )
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    model = helper.make_model(helper.make_graph([node], "g", [cond], [out]))
    before = model.SerializeToString()
    # Execute / Verify
    assert compact_names(model) == 0
    assert model.SerializeToString() == before


def test_unnamed_nodes_stay_unnamed_and_quantization_annotations_follow() -> None:
    # Prepare: a node without a name, a tensor annotated for quantization
    nodes = [
        helper.make_node("Relu", ["x"], ["a_long_intermediate_name"]),
        helper.make_node("Neg", ["a_long_intermediate_name"], ["y"], name="a_named_node"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "g", io[:1], io[1:])
    note = onnx.TensorAnnotation(tensor_name="a_long_intermediate_name")
    graph.quantization_annotation.append(note)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # Execute
    saved = compact_names(model)
    # Verify
    assert saved > 0
    assert [n.name for n in model.graph.node] == ["", "1"]
    assert model.graph.quantization_annotation[0].tensor_name == model.graph.node[0].output[0]


def test_committed_models_are_compact() -> None:
    # every shipped graph has short internal names (beat, ptb: the CNN students)
    pretrained = Path(__file__).resolve().parents[2] / "models" / "pretrained"
    for name in ("beat.onnx", "ptb.onnx"):
        inits = onnx.load(str(pretrained / name)).graph.initializer
        assert max(len(i.name) for i in inits) <= 2, name
