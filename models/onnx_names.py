"""Short internal names for shipped ONNX graphs (same computation, fewer bytes).

The exporter and onnxruntime's quantizer name every tensor after the PyTorch module path and
the quantization step (``net.stages.2.conv.bias_quantized_zero_point``, ``/net/stages.1/Max_
output_0_QuantizeLinear_Output``...). In the int8 beat student these names are about 14 kB of a
62 kB file: more than any weight tensor but one. :func:`compact_names` renames every internal
tensor and node to a base-36 counter. The graph's inputs and outputs (the model card's contract:
``beat``, ``rr``, ``probs``, ``embedding``) keep their names, weights and node order are
untouched, so onnxruntime computes bit-identical outputs (tested).

Nothing downstream looks up internal names: the aggregator finds the head initialisers by value
(``cloud_aggregator.releases.patch_head``), the RR gate attaches to the ``probs`` output.
"""

from __future__ import annotations

import logging
from itertools import count

import onnx

_LOGGER = logging.getLogger(__name__)

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_SUBGRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def base36(i: int) -> str:
    """``i >= 0`` in base 36 (``0``, ``1``, ..., ``z``, ``10``, ...)."""
    out = _DIGITS[i % 36]
    while i >= 36:
        i //= 36
        out = _DIGITS[i % 36] + out
    return out


def compact_names(model: onnx.ModelProto) -> int:
    """Rename internal tensors and nodes of ``model`` to short names, in place.

    Parameters
    ----------
    model : onnx.ModelProto
        A graph without subgraphs (``If``/``Loop`` bodies) or sparse initialisers; such a model
        is left as it is (their scoping rules are not worth handling for our flat nets).

    Returns
    -------
    int
        Bytes saved in the serialised model (0 when left as it is).
    """
    g = model.graph
    if g.sparse_initializer or any(a.type in _SUBGRAPH_TYPES for n in g.node for a in n.attribute):
        _LOGGER.warning("graph has subgraphs or sparse initialisers: names left as they are")
        return 0
    before = int(model.ByteSize())
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    mapping: dict[str, str] = {}
    counter = count()

    def rename(name: str) -> str:
        if not name or name in keep:  # "" = an omitted optional input
            return name
        if name not in mapping:
            new = base36(next(counter))
            while new in keep:
                new = base36(next(counter))
            mapping[name] = new
        return mapping[name]

    for init in g.initializer:
        init.name = rename(init.name)
    for i, node in enumerate(g.node):
        for j, name in enumerate(node.input):
            node.input[j] = rename(name)
        for j, name in enumerate(node.output):
            node.output[j] = rename(name)
        if node.name:  # nodes have their own namespace; an unnamed node stays unnamed
            node.name = base36(i)
        node.doc_string = ""
    for info in g.value_info:
        info.name = rename(info.name)
    for note in g.quantization_annotation:
        note.tensor_name = rename(note.tensor_name)
    g.doc_string = ""
    saved = before - int(model.ByteSize())
    _LOGGER.debug("compacted %d names: %d bytes saved", len(mapping), saved)
    return saved
