"""7-bit int8 weights: the same int8 model gives the same answers on every CPU.

onnxruntime runs a QDQ model's convolutions and Gemms as U8S8 integer kernels. On x86 CPUs with
VNNI (``vpdpbusd``) and on ARM the products are accumulated in 32 bits. On x86 CPUs with AVX2
but without VNNI (many laptops and cloud VMs, e.g. CI's AMD EPYC VM) the kernels use
``vpmaddubsw``, which adds two u8 x s8 products into a *saturating* int16: with activations up
to 255 and weights up to 127 the pair reaches 64,770 and clips at 32,767. The shipped beat model
measured on such a CPU: the first convolution's output differed in 3.5 % of its values by up to
71 steps, 1,268 of DS2's 49,685 beats changed class and VEB +P fell from 91.5 to 89.6
(docs/models.md, "7-bit weights").

With weights in [-64, 64] a pair is at most 2 x 255 x 64 = 32,640 and nothing saturates, so
every CPU computes the same integers (onnxruntime's recommendation for such CPUs is
``reduce_range``, which is exactly this range). :func:`models.quantize.quantize` asks for it;
:func:`narrow_weights` rewrites a model quantized before that (full 8-bit weights) without its
float checkpoint: each weight tensor's per-channel scale grows by ``peak / 64`` and its int32
bias is re-expressed in the new ``input scale x weight scale``, so the graph is unchanged apart
from one bit of weight precision.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

_LOGGER = logging.getLogger(__name__)

WEIGHT_QMAX = 64  # |int8 weight| bound: 2 * 255 * 64 = 32,640 fits vpmaddubsw's int16
_CONSUMERS = ("Conv", "Gemm", "MatMul")  # ops onnxruntime fuses into U8S8 integer kernels
_BIAS_RTOL = 1e-4  # an int32 bias scale must be input scale x weight scale to this tolerance


class _Graph:
    """Lookups over a QDQ graph: initializers and the DequantizeLinear producing a tensor."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.inits = {i.name: i for i in model.graph.initializer}
        self.dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}

    def array(self, name: str) -> npt.NDArray[np.generic] | None:
        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def quantized_weight(self, tensor: str) -> tuple[onnx.NodeProto, npt.NDArray[np.int8]] | None:
        """The DQ node and its int8 initializer if ``tensor`` is a symmetric int8 constant."""
        node = self.dq.get(tensor)
        if node is None:
            return None
        weight = self.array(node.input[0])
        if weight is None or weight.dtype != np.int8 or node.input[1] not in self.inits:
            return None
        has_zero = len(node.input) > 2 and bool(node.input[2])
        zero = self.array(node.input[2]) if has_zero else None
        if has_zero and (zero is None or np.any(zero != 0)):
            return None  # asymmetric (or computed) zero points are not what models.quantize writes
        return node, weight.astype(np.int8)

    def add(self, array: npt.NDArray[np.generic], hint: str) -> str:
        """A new initializer (unique name) holding ``array``."""
        name, k = f"{hint}_w7", 0
        while name in self.inits:
            k += 1
            name = f"{hint}_w7_{k}"
        init = numpy_helper.from_array(array, name)
        self.model.graph.initializer.append(init)
        self.inits[name] = init
        return name

    def drop_if_unused(self, names: set[str]) -> None:
        """Remove the initializers ``names`` that nothing reads any more: no node (subgraphs
        included), graph input or output."""
        used = {i.name for i in self.model.graph.input} | {o.name for o in self.model.graph.output}
        used |= _node_inputs(self.model.graph)
        keep = [i for i in self.model.graph.initializer if i.name not in names or i.name in used]
        del self.model.graph.initializer[:]
        self.model.graph.initializer.extend(keep)


def _node_inputs(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs (If/Loop bodies) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                names |= _node_inputs(sub)
    return names


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _weights(graph: _Graph) -> list[tuple[onnx.NodeProto, onnx.NodeProto, npt.NDArray[np.int8]]]:
    """``(consumer, weight DQ, int8 weights)`` of every integer-kernel op's weight input."""
    found = []
    for node in graph.model.graph.node:
        if node.op_type in _CONSUMERS and len(node.input) > 1:
            weight = graph.quantized_weight(node.input[1])
            if weight is not None:
                found.append((node, *weight))
    return found


def int8_weight_peak(model: onnx.ModelProto) -> int:
    """Largest ``|w|`` among the int8 weights of the model's Conv/Gemm/MatMul (0 if none)."""
    peaks = [int(np.abs(w.astype(np.int32)).max(initial=0)) for _, _, w in _weights(_Graph(model))]
    return max(peaks, default=0)


def narrow_weights(model: onnx.ModelProto) -> int:
    """Rescale every int8 weight tensor into [-64, 64] in place (and its int32 bias with it).

    Returns
    -------
    int
        Weight tensors rewritten (0: the model already had 7-bit weights).

    Raises
    ------
    ValueError
        If an int32 bias is not a constant, or its scale is not its input scale times its
        weight scale (not a graph ``models.quantize`` or onnxruntime's QDQ quantizer wrote);
        nothing is changed then.
    """
    graph = _Graph(model)
    plans: dict[int, tuple[onnx.NodeProto, npt.NDArray[np.int8], npt.NDArray[np.float32]]] = {}
    biases = []
    for consumer, dq, weight in _weights(graph):
        peak = np.abs(weight.astype(np.int32))
        scale = np.asarray(graph.array(dq.input[1]), dtype=np.float32)
        axis = _axis(dq) % weight.ndim
        other = tuple(i for i in range(weight.ndim) if i != axis)
        per_channel = scale.size > 1  # a one-element 1-D scale is per-tensor too
        per = peak.max(axis=other) if per_channel else np.asarray(peak.max())
        if int(per.max(initial=0)) <= WEIGHT_QMAX:
            continue
        factor = np.maximum(per, WEIGHT_QMAX).astype(np.float64) / WEIGHT_QMAX  # >= 1
        shape = [1] * weight.ndim
        if per_channel:
            shape[axis] = -1
        narrow = np.clip(np.round(weight / factor.reshape(shape)), -WEIGHT_QMAX, WEIGHT_QMAX)
        new_scale = (scale.astype(np.float64).reshape(per.shape) * factor).astype(np.float32)
        bias = _bias_plan(graph, consumer, scale, new_scale)
        if bias is not None:
            biases.append(bias)
        # a weight shared by two consumers is narrowed once (each consumer's bias follows it)
        plans[id(dq)] = (dq, narrow.astype(np.int8), new_scale.reshape(scale.shape))
    replaced: set[str] = set()
    for dq, narrow, new_scale in plans.values():  # all checks passed: now edit
        replaced.update(dq.input[:2])
        dq.input[0] = graph.add(narrow, dq.input[0])
        dq.input[1] = graph.add(new_scale, dq.input[1])
    for bias_dq, values, bias_scale in biases:
        replaced.update(bias_dq.input[:2])
        bias_dq.input[0] = graph.add(values, bias_dq.input[0])
        bias_dq.input[1] = graph.add(bias_scale, bias_dq.input[1])
    graph.drop_if_unused(replaced)
    _LOGGER.info(
        "narrowed %d int8 weight tensors to [-%d, %d]", len(plans), WEIGHT_QMAX, WEIGHT_QMAX
    )
    return len(plans)


def _bias_plan(
    graph: _Graph,
    consumer: onnx.NodeProto,
    scale: npt.NDArray[np.float32],
    new_scale: npt.NDArray[np.float32],
) -> tuple[onnx.NodeProto, npt.NDArray[np.int32], npt.NDArray[np.float32]] | None:
    """The consumer's int32 bias re-expressed in ``input scale x new weight scale``."""
    if len(consumer.input) < 3 or consumer.input[2] not in graph.dq:
        return None
    bias_dq = graph.dq[consumer.input[2]]
    values, bias_scale = graph.array(bias_dq.input[0]), graph.array(bias_dq.input[1])
    if values is None or bias_scale is None:  # computed: cannot be re-expressed, so refuse
        raise ValueError(f"{consumer.op_type} {consumer.name!r}: bias is not a constant")
    if values.dtype != np.int32:
        return None  # not an integer-kernel bias (onnxruntime adds it in float)
    x_dq = graph.dq.get(consumer.input[0])
    x_scale = None if x_dq is None else graph.array(x_dq.input[1])
    if x_scale is None or x_scale.size != 1:
        raise ValueError(
            f"{consumer.op_type} {consumer.name!r}: int32 bias without a quantized input"
        )
    x = float(x_scale.reshape(-1)[0])
    expected = x * scale.astype(np.float64)
    if not np.allclose(bias_scale, expected, rtol=_BIAS_RTOL, atol=0):
        raise ValueError(
            f"{consumer.op_type} {consumer.name!r}: bias scale is not input scale x weight scale"
        )
    target = (x * new_scale.astype(np.float64)).astype(np.float32)
    rescaled = np.round(values.astype(np.float64) * bias_scale.astype(np.float64) / target)
    limit = np.iinfo(np.int32)
    narrowed: npt.NDArray[np.int32] = np.clip(rescaled, limit.min, limit.max).astype(np.int32)
    return bias_dq, narrowed, target


def fused_and_reference_sessions(model: str | bytes) -> tuple[Any, Any]:
    """onnxruntime sessions of ``model``: optimized (this CPU's fused integer kernels) and
    unoptimized (float arithmetic on the dequantized values: what a CPU without int16
    saturation computes)."""
    import onnxruntime as ort

    sessions = []
    levels = ort.GraphOptimizationLevel
    for level in (levels.ORT_ENABLE_ALL, levels.ORT_DISABLE_ALL):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = 1
        sessions.append(ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]))
    return sessions[0], sessions[1]


def probs_output(session: Any, feed: dict[str, np.ndarray]) -> npt.NDArray[np.float64]:
    """``probs`` (else the first output) of ``session`` on ``feed``."""
    names = [o.name for o in session.get_outputs()]
    name = "probs" if "probs" in names else names[0]
    return np.asarray(session.run([name], feed)[0], dtype=np.float64)


def fused_and_reference(
    model: str | bytes, feed: dict[str, np.ndarray]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``probs`` (else the first output) of onnxruntime's optimized and unoptimized graphs of
    ``model`` on ``feed`` (:func:`fused_and_reference_sessions`)."""
    fused, reference = fused_and_reference_sessions(model)
    return probs_output(fused, feed), probs_output(reference, feed)
