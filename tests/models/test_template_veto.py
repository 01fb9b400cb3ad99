"""Template veto: numpy reference, ONNX graph parity (after the RR gate), card round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from models.rr_gate import RRGate, add_rr_gate_to_onnx
from models.template_veto import TemplateVeto, add_template_veto_to_onnx

K, C, L = 4, 5, 8  # rr features, classes (N, S, V, F, Q), window samples
V, Q = 2, 4


def _tiny_onnx(
    path: Path, channels: int = 2, classes: int = C, opset: int = 17, length: int | str = L
) -> None:
    """``beat`` (N, channels, L), ``rr`` (N, K) -> softmax(linear) ``probs`` (N, classes)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1.5, (channels * L + K, classes)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["beat"], ["flat"], axis=1),
        helper.make_node("Concat", ["flat", "rr"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inputs = [
        helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["N", channels, length]),
        helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["N", K]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["probs"], feeds)[0])


def _feeds(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Beats whose template channel spans both sides of the threshold (RMS 0.05 to 2)."""
    beat = rng.normal(0, 1, (n, 2, L)).astype(np.float32)
    beat[:, 1] *= rng.uniform(0.05, 2.0, (n, 1)).astype(np.float32)
    return {"beat": beat, "rr": rng.uniform(0.3, 1.5, (n, K)).astype(np.float32)}


@settings(max_examples=60, derandomize=True)
@given(
    logits=hnp.arrays(np.float64, (7, C), elements=st.floats(-20, 20)),
    diff=hnp.arrays(np.float32, (7, L), elements=st.floats(-3, 3, width=32)),
    limit=st.floats(0, 3),
)
def test_apply_moves_only_v_to_q_below_the_threshold(
    logits: np.ndarray, diff: np.ndarray, limit: float
) -> None:
    veto = TemplateVeto(limit, V, Q)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    signal = np.stack([np.zeros_like(diff), diff], axis=1)
    out = veto.apply(p, signal)
    low = np.sqrt(np.mean(diff.astype(np.float64) ** 2, axis=1)) < limit
    near = np.isclose(np.sqrt(np.mean(diff.astype(np.float64) ** 2, axis=1)), limit, rtol=1e-5)
    sure = ~near  # float32 rounding may decide a beat exactly at the threshold either way
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:, [0, 1, 3]], p[:, [0, 1, 3]], atol=1e-6)
    np.testing.assert_allclose(out[sure & low, V], 0.0)
    np.testing.assert_allclose(out[sure & ~low], p[sure & ~low], atol=1e-6)
    np.testing.assert_allclose(out[sure & low, Q], (p[:, Q] + p[:, V])[sure & low], atol=1e-6)


def test_threshold_is_on_the_rms_of_the_template_channel() -> None:
    # Prepare: channel 1 constant 0.3 (RMS 0.3); channel 0 large, which must not matter
    signal = np.stack([np.full((2, L), 9.0), np.full((2, L), 0.3)], axis=1)
    probs = np.array([[0.1, 0.1, 0.7, 0.05, 0.05]] * 2)
    # Execute / Verify
    assert TemplateVeto(0.31, V, Q).vetoed(signal).all()
    assert not TemplateVeto(0.29, V, Q).vetoed(signal).any()
    np.testing.assert_allclose(
        TemplateVeto(0.31, V, Q).apply(probs, signal)[0], [0.1, 0.1, 0.0, 0.05, 0.75]
    )


@pytest.mark.parametrize(("gate_first", "opset"), [(True, 17), (False, 17), (False, 18)])
def test_onnx_graph_matches_numpy_reference(tmp_path: Path, gate_first: bool, opset: int) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    path = tmp_path / "m.onnx"
    _tiny_onnx(path, opset=opset)
    gate = RRGate(np.array([-1.0, 0.5, -3.0, 2.0]), 0.3, 0, 1)
    if gate_first:
        add_rr_gate_to_onnx(path, gate)
    feeds = _feeds(rng, 256)
    before = _run(path, feeds)
    veto = TemplateVeto(0.5, V, Q)
    # Execute
    add_template_veto_to_onnx(path, veto)
    after = _run(path, feeds)
    # Verify: the numpy reference, some beats changed and some not, one probs output
    np.testing.assert_allclose(after, veto.apply(before, feeds["beat"]), atol=1e-6)
    changed = np.abs(after - before).max(axis=1) > 1e-6
    assert 0 < changed.sum() < len(changed)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["probs"]


@pytest.mark.parametrize(
    ("channels", "classes", "signal_input", "length", "message"),
    [
        (1, C, "beat", L, "no channel 1"),  # no template channel (beat_1ch)
        (2, 3, "beat", L, "classes"),  # no Q class
        (2, C, "ecg", L, "no input 'ecg'"),
        (2, C, "beat", "L", "fixed window length"),  # the limit is a sum over L samples
    ],
)
def test_models_the_veto_cannot_fit_are_refused(
    tmp_path: Path, channels: int, classes: int, signal_input: str, length: int | str, message: str
) -> None:
    path = tmp_path / "m.onnx"
    _tiny_onnx(path, channels=channels, classes=classes, length=length)
    with pytest.raises(ValueError, match=message):
        add_template_veto_to_onnx(path, TemplateVeto(0.5, V, Q), signal_input)


def test_dict_round_trip_and_bad_values() -> None:
    veto = TemplateVeto(0.45, V, Q)
    assert TemplateVeto.from_dict(veto.to_dict()) == veto
    good = veto.to_dict()
    bad: list[tuple[object, type[Exception]]] = [
        ({**good, "rms_below": -1}, ValueError),
        ({**good, "q_index": V}, ValueError),
        ({**good, "rms_below": 1e200}, ValueError),  # rms ** 2 * L would overflow
        ({**good, "rms_below": "0.5"}, TypeError),  # types are checked, not coerced
        ({**good, "rms_below": True}, TypeError),
        ({**good, "v_index": 2.9}, TypeError),
        ({**good, "channel": True}, TypeError),
        ([0.5, 2, 4], TypeError),
        ({"v_index": 2, "q_index": 4}, KeyError),
    ]
    for value, error in bad:
        with pytest.raises(error):
            TemplateVeto.from_dict(value)  # type: ignore[arg-type]


@settings(max_examples=200, derandomize=True)
@given(
    st.dictionaries(
        st.sampled_from(["rms_below", "v_index", "q_index", "channel", "formula"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-5, 10),
            st.text(max_size=3),
        ),
    )
)
def test_from_dict_accepts_a_valid_veto_or_raises_a_clear_error(d: dict[str, Any]) -> None:
    # a card is data from a file: anything else than these errors would crash a reader
    try:
        veto = TemplateVeto.from_dict(d)
    except (KeyError, TypeError, ValueError):
        return
    assert np.isfinite(veto.rms_below) and veto.rms_below >= 0
    assert veto.v_index != veto.q_index and min(veto.v_index, veto.q_index, veto.channel) >= 0
    # and whatever parsed can be applied to beats that have its channel and classes
    width = max(veto.v_index, veto.q_index) + 1
    signal = np.ones((3, veto.channel + 1, L), np.float32)
    out = veto.apply(np.full((3, width), 1.0 / width), signal)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
