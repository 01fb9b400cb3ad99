"""RR gate: fit, numpy reference, ONNX graph parity, card round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from models.rr_gate import RRGate, add_rr_gate_to_onnx, fit_rr_gate

K, C, L = 4, 5, 8  # rr features, classes (N, S, V, F, Q), window samples


def _rr(rng: np.random.Generator, n: int, premature: np.ndarray) -> np.ndarray:
    """rr_pre, rr_post (s), rr_pre / rr_local, rr_post / rr_local with premature beats short."""
    local = rng.uniform(0.6, 1.2, n)
    ratio = np.where(premature, rng.uniform(0.55, 0.8, n), rng.uniform(0.9, 1.1, n))
    post = np.where(premature, rng.uniform(1.1, 1.4, n), rng.uniform(0.9, 1.1, n))
    return np.column_stack([ratio * local, post * local, ratio, post])


def _tiny_onnx(path: Path, with_rr: bool = True) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (L + (K if with_rr else 0), C)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["beat"], ["flat"], axis=1)]
    inputs = [helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["N", 1, L])]
    x = "flat"
    if with_rr:
        nodes.append(helper.make_node("Concat", ["flat", "rr"], ["x"], axis=1))
        inputs.append(helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["N", K]))
        x = "x"
    nodes += [
        helper.make_node("MatMul", [x, "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", C])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["probs"], feeds)[0])


def test_fit_calls_premature_beats_s() -> None:
    # Prepare: S beats are premature with a compensatory pause; others regular
    rng = np.random.default_rng(1)
    labels = rng.choice([0, 1, 2], 3000, p=[0.85, 0.05, 0.10])
    rr = _rr(rng, len(labels), labels == 1)
    # Execute
    gate = fit_rr_gate(rr, labels, 0, 1)
    q = gate.s_probability(rr)
    # Assert: the logistic separates the synthetic classes
    assert np.mean(q[labels == 1] > 0.5) > 0.95 and np.mean(q[labels == 0] < 0.5) > 0.95


def test_fit_refuses_data_without_s_beats() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="both sides"):
        fit_rr_gate(_rr(rng, 50, np.zeros(50, bool)), np.zeros(50, np.int64), 0, 1)


@settings(max_examples=60, derandomize=True)
@given(
    logits=hnp.arrays(np.float64, (7, C), elements=st.floats(-20, 20)),
    rr=hnp.arrays(np.float64, (7, K), elements=st.floats(0, 5)),
)
def test_apply_keeps_row_sums_and_the_other_classes(logits: np.ndarray, rr: np.ndarray) -> None:
    gate = RRGate(np.array([-1.0, 0.5, -3.0, 2.0]), 0.3, 0, 1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = gate.apply(p, rr)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:, 2:], p[:, 2:], atol=1e-6)
    np.testing.assert_allclose(out[:, 0] + out[:, 1], p[:, 0] + p[:, 1], atol=1e-5)
    assert np.all(out >= 0)


@pytest.mark.parametrize("v_expert", [False, True])
def test_onnx_graph_matches_numpy_reference(tmp_path: Path, v_expert: bool) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    path = tmp_path / "m.onnx"
    _tiny_onnx(path)
    feeds = {
        "beat": rng.normal(0, 1, (64, 1, L)).astype(np.float32),
        "rr": np.abs(_rr(rng, 64, rng.random(64) < 0.3)).astype(np.float32),
    }
    feeds["rr"][0, 0] = 0.0  # the floor guards log(0)
    before = _run(path, feeds)
    labels = rng.choice([0, 1, 2], 500, p=[0.8, 0.1, 0.1])
    gate = fit_rr_gate(_rr(rng, 500, labels >= 1), labels, 0, 1, v_index=2 if v_expert else None)
    assert (gate.v_weight is not None) == v_expert
    # Execute
    add_rr_gate_to_onnx(path, gate)
    after = _run(path, feeds)
    # Assert
    np.testing.assert_allclose(after, gate.apply(before, feeds["rr"]), atol=1e-5)  # fp32 graph
    assert not np.allclose(after, before)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["probs"]


def test_onnx_without_rr_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _tiny_onnx(path, with_rr=False)
    with pytest.raises(ValueError, match="no input"):
        add_rr_gate_to_onnx(path, RRGate(np.zeros(K), 0.0, 0, 1))


def test_dict_round_trip() -> None:
    gate = RRGate(np.array([0.25, -1.5, 3.0, 0.0]), -0.75, 0, 1)
    back = RRGate.from_dict(gate.to_dict())
    np.testing.assert_array_equal(back.weight, gate.weight)
    assert (back.bias, back.n_index, back.s_index, back.floor) == (-0.75, 0, 1, gate.floor)
    assert back.v_weight is None
    with_v = RRGate(gate.weight, -0.75, 0, 1, v_weight=np.arange(4.0), v_bias=0.5, v_index=2)
    back_v = RRGate.from_dict(with_v.to_dict())
    assert back_v.v_weight is not None and back_v.v_weight.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert (back_v.v_bias, back_v.v_index) == (0.5, 2)
