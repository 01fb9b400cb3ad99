"""A model file onnxruntime cannot load is a one-line CorruptInputError, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from common.errors import CorruptInputError
from edge_agent.inference import ORT_MIN_VERSION, OnnxBeatClassifier
from tests.edge_agent.helpers import build_beat_model


def _unknown_op_model() -> bytes:
    """A valid ONNX graph whose only node is an operator no onnxruntime implements (as a
    uint8 Max is to onnxruntime < 1.24)."""
    node = helper.make_node("NoSuchOp", ["beat"], ["probs"], domain="org.example.none")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["N", 2, 96])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("org.example.none", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


@pytest.mark.parametrize("content", [b"not an onnx model", _unknown_op_model()])
def test_a_graph_onnxruntime_refuses_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    # Prepare: a real model and card, then the model bytes replaced (hash check off)
    path = build_beat_model(tmp_path / "m")
    path.write_bytes(content)
    # Execute / Verify
    with pytest.raises(CorruptInputError, match="cannot load") as info:
        OnnxBeatClassifier(path, verify_sha256=False)
    message = str(info.value)
    assert "\n" not in message and f">= {ORT_MIN_VERSION}" in message
