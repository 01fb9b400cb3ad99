"""7-bit int8 weights (models.weight_range): same answers with and without onnxruntime's fused
integer kernels, on this CPU, whatever it is (CI's AVX2 VM without VNNI saturates 8-bit ones)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from medchain.cli import main
from models.narrow_cli import fused_vs_reference
from models.weight_range import WEIGHT_QMAX, int8_weight_peak, narrow_weights

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"
SX, ZX = 0.02, 128  # input scale / zero point: u8 values far from 0, as a z-scored ECG's


def _qdq_model(weight: np.ndarray, w_scale: np.ndarray, bias_scale_factor: float = 1.0) -> bytes:
    """x (N, C, 16) -> Q/DQ -> Conv(int8 ``weight`` (O, C, 3), per-channel ``w_scale``, int32
    bias) -> Q/DQ (ReLU by zero point 0) -> Flatten -> Gemm(int8 weights) -> ``y`` (N, 4)."""
    out_ch, in_ch, _ = weight.shape
    rng = np.random.default_rng(1)
    g_weight = rng.integers(-127, 128, (4, out_ch * 16)).astype(np.int8)
    g_scale = np.full(4, 0.003, np.float32)
    bias = rng.integers(-5000, 5000, out_ch).astype(np.int32)
    sy = 0.5
    arrays = {
        "sx": np.float32(SX),
        "zx": np.uint8(ZX),
        "sy": np.float32(sy),
        "zy": np.uint8(0),
        "w": weight,
        "ws": w_scale.astype(np.float32),
        "b": bias,
        "bs": (SX * w_scale * bias_scale_factor).astype(np.float32),
        "gw": g_weight,
        "gs": g_scale,
        "gb": np.zeros(4, np.int32),
        "gbs": (sy * g_scale).astype(np.float32),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1]),
        helper.make_node("QuantizeLinear", ["c", "sy", "zy"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "sy", "zy"], ["cd"]),
        helper.make_node("Flatten", ["cd"], ["f"], axis=1),
        helper.make_node("DequantizeLinear", ["gw", "gs"], ["gwd"], axis=0),
        helper.make_node("DequantizeLinear", ["gb", "gbs"], ["gbd"], axis=0),
        helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["fq"]),
        helper.make_node("DequantizeLinear", ["fq", "sy", "zy"], ["fd"]),
        helper.make_node("Gemm", ["fd", "gwd", "gbd"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_ch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in arrays.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _reference(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def _saturating_case() -> tuple[bytes, np.ndarray]:
    """Large positive weights and inputs near the top of u8: pairs beyond int16 on AVX2."""
    rng = np.random.default_rng(0)
    weight = rng.integers(90, 128, (8, 8, 3)).astype(np.int8)
    weight[1::2] *= -1
    x = rng.uniform(1.5, 2.5, (64, 8, 16)).astype(np.float32)  # u8 ~ 203-253
    return _qdq_model(weight, rng.uniform(0.001, 0.002, 8)), x


def test_narrowed_model_gives_the_same_answers_fused_and_unfused() -> None:
    # Prepare: a model whose 8-bit weights saturate vpmaddubsw (CPUs without VNNI)
    wide, x = _saturating_case()
    model = onnx.load_from_string(wide)
    assert int8_weight_peak(model) == 127
    # Execute
    count = narrow_weights(model)
    narrow = model.SerializeToString()
    # Verify: 7-bit weights, the fused kernels of this CPU agree with the reference, and the
    # function is the original's up to one bit of weight precision
    assert count == 2 and int8_weight_peak(model) == WEIGHT_QMAX
    assert fused_vs_reference(narrow, {"x": x}) < 1e-3
    before, after = _reference(wide, x), _reference(narrow, x)
    assert np.abs(before - after).max() < 0.05 * np.abs(before).max()
    assert narrow_weights(model) == 0  # idempotent
    names = {i.name for i in model.graph.initializer}
    assert "w" not in names and "gw" not in names  # the 8-bit tensors are gone


def test_a_bias_in_another_scale_is_refused_and_nothing_changes() -> None:
    # Prepare: an int32 bias whose scale is not input scale x weight scale
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (8, 8, 3)).astype(np.int8)
    model = onnx.load_from_string(_qdq_model(weight, np.full(8, 0.001), bias_scale_factor=2.0))
    before = model.SerializeToString()
    # Execute / Verify
    with pytest.raises(ValueError, match="bias scale is not input scale x weight scale"):
        narrow_weights(model)
    assert model.SerializeToString() == before


@given(
    st.integers(1, 6),
    st.integers(-127, 127),
    st.floats(1e-5, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_narrowing_stays_within_half_a_new_step(
    channels: int, peak: int, scale: float, seed: int
) -> None:
    # Prepare: random per-channel int8 weights, one channel reaching ``peak``
    rng = np.random.default_rng(seed)
    weight = rng.integers(-abs(peak), abs(peak) + 1, (channels, 8, 3)).astype(np.int8)
    weight[0, 0, 0] = peak
    w_scale = rng.uniform(0.5, 2.0, channels) * scale
    model = onnx.load_from_string(_qdq_model(weight, w_scale))
    conv_dq = next(n for n in model.graph.node if n.output[0] == "wd")
    # Execute
    narrow_weights(model)
    # Verify: every weight in range and within half a new quantization step of its real value
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    new_w, new_s = inits[conv_dq.input[0]].astype(np.float64), inits[conv_dq.input[1]]
    assert np.abs(new_w).max() <= WEIGHT_QMAX
    real = weight * w_scale.astype(np.float32)[:, None, None]
    step = new_s.astype(np.float64)[:, None, None]
    assert np.all(np.abs(new_w * step - real) <= 0.5 * step + 1e-12)


def test_committed_models_have_7bit_weights() -> None:
    for name in ("beat.onnx", "ptb.onnx"):
        assert 0 < int8_weight_peak(onnx.load(str(PRETRAINED / name))) <= WEIGHT_QMAX, name


def test_committed_beat_model_answers_the_same_fused_and_unfused(data_root: Path) -> None:
    # Prepare: real DS2 beats (232: the most SVEBs; 208: VEBs and fusion beats)
    from common.datasets import default_cache_dir
    from models.predict import onnx_feed, onnx_session
    from models.tasks import LoadOptions, get_task

    env = {**os.environ, "MEDCHAIN_DATA": str(data_root)}
    task = get_task("beat")
    opts = LoadOptions(env=env, records=["232", "208"], cache_dir=default_cache_dir(env) / "pre")
    data = task.load(task.test_split, opts)
    path = PRETRAINED / "beat.onnx"
    feed = onnx_feed(onnx_session(path), data)
    # Execute
    gap = fused_vs_reference(path.read_bytes(), feed)
    # Verify: with the 8-bit weights this CPU (AVX2 without VNNI) moved probabilities by 0.83
    assert gap < 0.02


def _widen(path: Path) -> None:
    """Test helper: the inverse of narrowing, 8-bit weights as models had before it."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        if node.input[1] not in dq:
            continue
        w_dq = dq[node.input[1]]
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        s = numpy_helper.to_array(inits[w_dq.input[1]])
        inits[w_dq.input[0]].CopyFrom(
            numpy_helper.from_array(
                np.clip(np.round(w.astype(np.float64) * 127 / 64), -127, 127).astype(np.int8),
                w_dq.input[0],
            )
        )
        inits[w_dq.input[1]].CopyFrom(
            numpy_helper.from_array(s * np.float32(64 / 127), w_dq.input[1])
        )
        if len(node.input) > 2 and node.input[2] in dq:
            b_dq = dq[node.input[2]]
            b = numpy_helper.to_array(inits[b_dq.input[0]])
            bs = numpy_helper.to_array(inits[b_dq.input[1]])
            wide = np.round(b.astype(np.float64) * 127 / 64).astype(np.int32)
            inits[b_dq.input[0]].CopyFrom(numpy_helper.from_array(wide, b_dq.input[0]))
            inits[b_dq.input[1]].CopyFrom(
                numpy_helper.from_array(bs * np.float32(64 / 127), b_dq.input[1])
            )
    onnx.save(model, str(path))


def test_narrow_weights_cli_rewrites_an_8bit_model_and_its_card(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the committed PTB model with 8-bit weights, as it was shipped before
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    for name in ("ptb.onnx", "ptb.card.json", "ptb.head.npz"):
        shutil.copyfile(PRETRAINED / name, tmp_path / name)
    model = tmp_path / "ptb.onnx"
    _widen(model)
    assert int8_weight_peak(onnx.load(str(model))) == 127
    # Execute
    rc = main(["narrow-weights", "--task", "ptb", "--model", str(model)])
    # Verify: 7-bit weights, card re-measured with the old int8 metrics kept
    assert rc == 0 and "weight tensors narrowed" in capsys.readouterr().out
    assert int8_weight_peak(onnx.load(str(model))) == WEIGHT_QMAX
    card = json.loads((tmp_path / "ptb.card.json").read_text())
    assert {"int8", "int8_8bit_weights", "fp32"} <= set(card["metrics"])
    assert "[-64, 64]" in card["artifact"]["quantization"]
    assert card["training"]["command"].endswith(
        f"medchain narrow-weights --task ptb --model {model}"
    )
    assert card["artifact"]["size_bytes"] == model.stat().st_size
    # a second run changes nothing; a card of other classes is a one-line error
    assert main(["narrow-weights", "--task", "ptb", "--model", str(model)]) == 0
    assert "already in [-64, 64]" in capsys.readouterr().out
    assert main(["narrow-weights", "--task", "beat", "--model", str(model)]) != 0
    err = capsys.readouterr().err
    assert "has classes" in err and "Traceback" not in err
