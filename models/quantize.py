"""Static QDQ int8 quantization with onnxruntime (per-channel weights, stratified calibration).

Static QDQ is the fast path for Conv1D in onnxruntime (dynamic quantization is slower than
fp32 for these nets, see docs/models.md). Calibration examples are drawn from every class so the
activation ranges cover rare-class morphology. The final head (the Gemm producing the logits) is
kept fp32 by default: it is tiny, it is what devices retrain, and it keeps ``probs`` exact given
the embedding.

Activations are unsigned (QUInt8, asymmetric) and weights signed (QInt8, symmetric,
per-channel): U8S8 is what onnxruntime's x86 int8 kernels are built for (VNNI ``vpdpbusd``;
its symmetric indirect convolution and the fused ``QGemm`` have no S8S8 variant there, so with
int8 activations the embedding Gemm ran in float). Weights are 7-bit (``reduce_range``, in
[-64, 64]): on x86 CPUs without VNNI onnxruntime's U8S8 kernels add pairs of products in a
saturating int16, and full 8-bit weights changed the shipped beat model's answers there
(``models.weight_range``); with 7-bit weights every CPU computes the same integers.

``Max`` nodes (the polyphase export's MaxPool, see ``models.export``) are not quantized by
onnxruntime's tool; max commutes with a monotone (de)quantization, so :func:`int8_max` runs them
on the int8 tensors directly, exactly like onnxruntime runs a quantized MaxPool.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from common.errors import CorruptInputError
from models.onnx_names import compact_names
from models.tasks.base import TaskData
from models.weight_range import narrow_weights

_LOGGER = logging.getLogger(__name__)


def stratified_indices(
    labels: npt.NDArray[np.int64], per_class: int, seed: int
) -> npt.NDArray[np.int64]:
    """Up to ``per_class`` random indices of every class present, sorted."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        picked.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def calibration_inputs(
    data: TaskData, input_names: list[str], per_class: int = 200, seed: int = 0
) -> dict[str, npt.NDArray[np.float32]]:
    """Stratified calibration batch ``{input name: array}`` from ``data``."""
    idx = stratified_indices(data.labels, per_class, seed)
    arrays = {input_names[0]: data.signal[idx]}
    if len(input_names) > 1:
        arrays[input_names[1]] = data.features[idx]
    return arrays


class _Reader:
    """``CalibrationDataReader`` over in-memory arrays, in batches of ``batch``."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[np.float32]], batch: int = 64) -> None:
        n = len(next(iter(arrays.values())))
        self._iter: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(
            [{k: v[i : i + batch] for k, v in arrays.items()} for i in range(0, n, batch)]
        )

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._iter, None)


def head_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the Gemm/MatMul nodes feeding the ``probs`` Softmax (the classifier head)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    heads = []
    for node in softmax:
        prev = producers.get(node.input[0])
        while prev is not None and prev.op_type not in ("Gemm", "MatMul"):
            prev = producers.get(prev.input[0])
        if prev is not None:
            heads.append(prev.name)
    return heads


_LAYOUT_OPS = ("Flatten", "Reshape")  # move values without changing them: fine on int8


def int8_max(model: onnx.ModelProto) -> int:
    """Run ``DequantizeLinear -> Max -> QuantizeLinear`` on the int8 tensors, in place.

    Applies where every input of a ``Max`` is the only use of a ``DequantizeLinear``, all with the
    same scale and zero point, and the ``Max`` output only feeds one ``QuantizeLinear``, directly
    or through one ``Flatten`` / ``Reshape`` (a polyphase last stage before the embedding): the
    ``Max`` (and the reshape) then run on the quantized inputs and the consumers of that
    ``QuantizeLinear`` read the input scale and zero point. Exact: ``DQ`` is monotone, so
    ``max(DQ(a), DQ(b)) = DQ(max(a, b))``, and a reshape moves values without changing them.

    Returns
    -------
    int
        Number of ``Max`` nodes rewritten.
    """
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    dead: list[onnx.NodeProto] = []
    rewritten = 0
    for node in [n for n in graph.node if n.op_type == "Max"]:
        dqs = [producers.get(name) for name in node.input]
        outs = users.get(node.output[0], [])
        if not all(d is not None and d.op_type == "DequantizeLinear" for d in dqs):
            continue
        deq = [d for d in dqs if d is not None]
        params = {
            tuple(values[n].tobytes() if n in values else n for n in d.input[1:]) for d in deq
        }
        if len(params) != 1 or any(len(users[d.output[0]]) != 1 for d in deq):
            continue
        reshape = None
        if len(outs) == 1 and outs[0].op_type in _LAYOUT_OPS and outs[0].input[0] == node.output[0]:
            reshape, outs = outs[0], users.get(outs[0].output[0], [])
        if len(outs) != 1 or outs[0].op_type != "QuantizeLinear":
            continue
        if node.output[0] in graph_outputs or (reshape and reshape.output[0] in graph_outputs):
            continue  # a float output of the graph stays float
        quant = outs[0]
        readers = users.get(quant.output[0], [])
        if any(r.op_type != "DequantizeLinear" for r in readers):
            continue
        for reader in readers:
            reader.input[1:] = deq[0].input[1:]
        node.input[:] = [d.input[0] for d in deq]
        last = reshape if reshape is not None else node
        retyped = {node.output[0], last.output[0]}  # were float, now quantized: drop stale types
        last.output[0] = quant.output[0]
        for info in [v for v in graph.value_info if v.name in retyped]:
            graph.value_info.remove(info)
        dead += [*deq, quant]
        rewritten += 1
    orphans = {name for node in dead for name in node.input[1:]}
    for node in dead:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name in orphans - used]:
        graph.initializer.remove(init)
    return rewritten


def quantize(
    fp32_path: Path,
    out_path: Path,
    calibration: Mapping[str, npt.NDArray[np.float32]],
    *,
    per_channel: bool = True,
    keep_head_fp32: bool = True,
) -> Path:
    """Quantize an fp32 ONNX model to int8 static QDQ.

    Parameters
    ----------
    fp32_path : Path
        Input model (from ``models.export.export_onnx``).
    out_path : Path
        Output int8 model.
    calibration : mapping
        ``{input name: array}`` of representative inputs (use :func:`calibration_inputs`).
    per_channel : bool
        Per-output-channel weight scales.
    keep_head_fp32 : bool
        Leave the classifier head in float.

    Returns
    -------
    Path
        ``out_path``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        model = onnx.load(str(fp32_path))
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise CorruptInputError(f"cannot read ONNX model {fp32_path}: {exc}") from exc
    exclude = head_node_names(model) if keep_head_fp32 else []
    exclude += [n.name for n in model.graph.node if n.op_type == "Softmax"]
    # a Pad of a float graph input (the export's channel padding) stays float: quantizing the
    # input first would cost a Q -> DQ -> Pad -> Q chain per inference instead of one Q
    inputs = {i.name for i in model.graph.input}
    exclude += [n.name for n in model.graph.node if n.op_type == "Pad" and n.input[0] in inputs]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out_path),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,  # weights in [-64, 64]: no int16 saturation on AVX2 (module doc)
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    quantized = onnx.load(str(out_path))
    try:
        if narrow_weights(quantized):  # a no-op unless onnxruntime ignored reduce_range
            _LOGGER.warning("onnxruntime wrote 8-bit weights despite reduce_range; narrowed them")
    except ValueError as exc:  # never expected from onnxruntime's own QDQ graph
        raise CorruptInputError(f"quantized model {out_path}: {exc}") from exc
    int8_max(quantized)
    compact_names(quantized)  # ~14 kB of module-path names in the beat student
    onnx.save(quantized, str(out_path))
    _LOGGER.info(
        "quantized %s -> %s (%d bytes, head fp32: %s)",
        fp32_path,
        out_path,
        out_path.stat().st_size,
        exclude,
    )
    return out_path
