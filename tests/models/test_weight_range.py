"""7-bit int8 weights (models.weight_range): same answers with and without onnxruntime's fused
integer kernels, on this CPU, whatever it is (CI's AVX2 VM without VNNI saturates 8-bit ones)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from common.model_card import FUSED_INT8_GAP_LIMIT
from models.weight_range import WEIGHT_QMAX, fused_and_reference, int8_weight_peak, narrow_weights

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
    return fused_and_reference(model, {"x": x})[1]


def _pair_sums(model: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first convolution's integer accumulators, exact and as x86 AVX2 without VNNI adds
    them (``vpmaddubsw``: adjacent u8 x s8 products summed into a saturating int16, then
    int32): a CPU-independent emulation of the kernel that changed the 8-bit models' answers."""
    m = onnx.load_from_string(model)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    weight_dq = next(n for n in m.graph.node if n.output[0] == "wd")
    w = inits[weight_dq.input[0]].astype(np.int64)  # (O, C, 3)
    xq = np.clip(np.round(x / SX) + ZX, 0, 255).astype(np.int64)
    xq = np.pad(xq, ((0, 0), (0, 0), (1, 1)), constant_values=ZX)  # pads hold the zero point
    cols = np.stack([xq[:, :, t : t + x.shape[2]] for t in range(3)], axis=-1)  # N, C, L, 3
    a = cols.transpose(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)  # taps x channels
    k = w.transpose(0, 2, 1).reshape(w.shape[0], -1)  # O, taps x channels
    products = a[:, :, None, :] * k[None, None, :, :]
    exact = products.sum(axis=-1)
    pairs = products.reshape(*products.shape[:-1], -1, 2).sum(axis=-1)
    saturated = np.clip(pairs, -32768, 32767).sum(axis=-1)
    return exact, saturated


def _saturating_case() -> tuple[bytes, np.ndarray]:
    """Large positive weights and inputs near the top of u8: pairs beyond int16 on AVX2."""
    rng = np.random.default_rng(0)
    weight = rng.integers(90, 128, (8, 8, 3)).astype(np.int8)
    weight[1::2] *= -1
    x = rng.uniform(1.5, 2.5, (64, 8, 16)).astype(np.float32)  # u8 ~ 203-253
    return _qdq_model(weight, rng.uniform(0.001, 0.002, 8)), x


def test_8bit_weights_saturate_the_avx2_pair_sums_and_7bit_ones_cannot() -> None:
    # Prepare
    wide, x = _saturating_case()
    model = onnx.load_from_string(wide)
    # Execute
    exact8, avx2_8 = _pair_sums(wide, x)
    narrow_weights(model)
    exact7, avx2_7 = _pair_sums(model.SerializeToString(), x)
    # Verify: the emulated kernel is wrong with 8-bit weights and exact with 7-bit ones
    assert (exact8 != avx2_8).mean() > 0.1
    assert np.array_equal(exact7, avx2_7)
    assert 2 * 255 * WEIGHT_QMAX <= 32767  # why: no pair of 7-bit products leaves int16


def test_narrowed_model_gives_the_same_answers_fused_and_unfused() -> None:
    # Prepare: a model whose 8-bit weights saturate vpmaddubsw (CPUs without VNNI)
    wide, x = _saturating_case()
    model = onnx.load_from_string(wide)
    assert int8_weight_peak(model) == 127
    # Execute
    count = narrow_weights(model)
    narrow = model.SerializeToString()
    # Verify: 7-bit weights; this CPU's fused kernels agree with the reference up to float
    # rounding (one step of the conv's output quantization, 0.5, times a Gemm weight <= 0.19)
    assert count == 2 and int8_weight_peak(model) == WEIGHT_QMAX
    fused, reference = fused_and_reference(narrow, {"x": x})
    assert np.abs(fused - reference).max() <= 2 * 0.5 * 0.003 * 127
    # and the function is the original's up to one bit of weight precision
    before = _reference(wide, x)
    assert np.abs(before - reference).max() < 0.05 * np.abs(before).max()
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


def _gemm_model(
    op: str, weight: np.ndarray, scale: np.ndarray, *, axis: int, trans_b: int = 0, n_out: int = 1
) -> onnx.ModelProto:
    """x (N, K) -> Q/DQ -> ``n_out`` x ``op``(x, DQ(int8 ``weight``, ``scale``)[, int32 bias])
    sharing the one weight, each with its own bias (Gemm) -> ``y0``, ``y1``..."""
    rng = np.random.default_rng(2)
    out_dim = weight.shape[0] if trans_b else weight.shape[1]
    k_dim = weight.shape[1] if trans_b else weight.shape[0]
    arrays: dict[str, np.ndarray] = {
        "sx": np.asarray(SX, np.float32),
        "zx": np.asarray(ZX, np.uint8),
        "w": weight,
        "ws": scale.astype(np.float32),
        "spare": np.ones(3, np.float32),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=axis),
    ]
    for i in range(n_out):
        if op == "MatMul":
            nodes.append(helper.make_node("MatMul", ["xd", "wd"], [f"y{i}"]))
            continue
        arrays[f"b{i}"] = rng.integers(-3000, 3000, out_dim).astype(np.int32)
        arrays[f"bs{i}"] = (SX * np.broadcast_to(scale, (out_dim,))).astype(np.float32)
        nodes.append(helper.make_node("DequantizeLinear", [f"b{i}", f"bs{i}"], [f"bd{i}"], axis=0))
        nodes.append(helper.make_node("Gemm", ["xd", "wd", f"bd{i}"], [f"y{i}"], transB=trans_b))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k_dim])],
        [
            helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["N", out_dim])
            for i in range(n_out)
        ],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in arrays.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("op", "trans_b", "scale_shape"),
    [
        ("Gemm", 0, (6,)),  # weights (K, O): per-channel along axis 1
        ("Gemm", 1, ()),  # per-tensor scalar scale
        ("Gemm", 1, (1,)),  # a one-element 1-D scale is per-tensor too
        ("MatMul", 0, (6,)),
    ],
)
def test_layouts_and_scale_shapes_narrow_to_the_same_function(
    op: str, trans_b: int, scale_shape: tuple[int, ...]
) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    weight = rng.integers(-127, 128, (6, 10) if trans_b else (10, 6)).astype(np.int8)
    weight.flat[0] = 127
    scale = rng.uniform(0.001, 0.003, scale_shape).astype(np.float32)
    model = _gemm_model(op, weight, scale, axis=0 if trans_b else 1, trans_b=trans_b)
    x = rng.uniform(-2.0, 2.5, (32, 10)).astype(np.float32)
    before = _reference_out(model, x)
    # Execute
    assert narrow_weights(model) == 1
    # Verify: in range, the function kept, the fused kernels agree, the spare initializer kept
    after_fused, after = fused_and_reference(model.SerializeToString(), {"x": x})
    assert int8_weight_peak(model) == WEIGHT_QMAX
    assert np.abs(after - before).max() < 0.02 * np.abs(before).max()
    assert np.abs(after_fused - after).max() < 1e-4
    assert "spare" in {i.name for i in model.graph.initializer}


def _reference_out(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return fused_and_reference(model.SerializeToString(), {"x": x})[1]


def test_a_shared_weight_is_narrowed_once_and_every_bias_follows() -> None:
    # Prepare: two Gemms reading one weight, each with its own int32 bias
    rng = np.random.default_rng(4)
    weight = rng.integers(-127, 128, (6, 10)).astype(np.int8)
    model = _gemm_model("Gemm", weight, np.full(6, 0.002), axis=0, trans_b=1, n_out=2)
    old = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # Execute
    assert narrow_weights(model) == 1
    # Verify: each bias now in input scale x new weight scale, its real value moved by less
    # than half a new step
    new = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    new_ws = new[next(n for n in model.graph.node if n.output[0] == "wd").input[1]]
    for k in range(2):
        bias_dq = next(n for n in model.graph.node if n.output[0] == f"bd{k}")
        values, scale = new[bias_dq.input[0]], new[bias_dq.input[1]]
        assert np.allclose(scale, SX * new_ws, rtol=1e-6)
        real_before = old[f"b{k}"] * old[f"bs{k}"].astype(np.float64)
        assert np.all(
            np.abs(values * scale.astype(np.float64) - real_before) <= 0.5 * scale + 1e-12
        )


def test_a_computed_bias_is_refused_and_nothing_changes() -> None:
    # Prepare: the int32 bias comes out of a Constant node, not an initializer
    rng = np.random.default_rng(5)
    model = _gemm_model(
        "Gemm",
        rng.integers(-127, 128, (6, 10)).astype(np.int8),
        np.full(6, 0.002),
        axis=0,
        trans_b=1,
    )
    bias = next(i for i in model.graph.initializer if i.name == "b0")
    model.graph.node.insert(0, helper.make_node("Constant", [], ["b0"], value=bias))
    model.graph.initializer.remove(bias)
    before = model.SerializeToString()
    # Execute / Verify
    with pytest.raises(ValueError, match="bias is not a constant"):
        narrow_weights(model)
    assert model.SerializeToString() == before


def test_committed_models_have_7bit_weights() -> None:
    for name in ("beat.onnx", "ptb.onnx"):
        assert 0 < int8_weight_peak(onnx.load(str(PRETRAINED / name))) <= WEIGHT_QMAX, name


@pytest.mark.datasets("mitdb")
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
    fused, reference = fused_and_reference(str(path), feed)
    # Verify: with 8-bit weights an AVX2 CPU without VNNI moved probabilities by 0.63 here
    assert np.abs(fused - reference).max() < FUSED_INT8_GAP_LIMIT
    assert (fused.argmax(axis=1) == reference.argmax(axis=1)).mean() > 0.999
