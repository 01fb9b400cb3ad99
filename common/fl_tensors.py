"""Tensor bundles of the federated payloads: int8 quantisation and the (specs, blob) codec.

Tensors travel in the envelope blob of :mod:`common.protocol`, never as JSON lists: the body holds
one spec per tensor (name, dtype, shape, byte offset and, for int8-compressed tensors, the
per-tensor scale). Untrusted body fields are read through :mod:`common.wire_fields`.

Every decoder takes untrusted bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from common.protocol import ProtocolError
from common.wire_fields import int_field, number_field, require_field, text_field

FloatArray = npt.NDArray[np.float32]
Tensors = dict[str, FloatArray]

MAX_TENSORS = 256
MAX_ELEMENTS = 50_000_000  # per message; a full small CNN is ~1e5
MAX_MESSAGE = 256 * 1024 * 1024  # bytes, MQTT's own payload ceiling
COMPRESSIONS = ("none", "int8")
__all__ = [
    "COMPRESSIONS",
    "MAX_ELEMENTS",
    "MAX_MESSAGE",
    "MAX_TENSORS",
    "FloatArray",
    "Tensors",
    "compression_error",
    "pack_tensors",
    "quantize_int8",
    "unpack_tensors",
]

_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int8": np.dtype("i1")}


def quantize_int8(arr: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int8], float]:
    """Symmetric per-tensor int8 quantization.

    Returns the int8 values and the scale such that ``q * scale`` approximates ``arr``; the
    absolute error per element is at most ``scale / 2`` (round to nearest).
    """
    a = np.asarray(arr, dtype=np.float32)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.rint(a / scale), -127, 127).astype(np.int8)
    return q, scale


def compression_error(
    original: Mapping[str, FloatArray], restored: Mapping[str, FloatArray]
) -> float:
    """Relative L2 error ``||restored - original|| / ||original||`` over all tensors (0 if empty)."""
    num = sum(float(np.sum((restored[k] - v) ** 2)) for k, v in original.items())
    den = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in original.values())
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def pack_tensors(
    tensors: Mapping[str, npt.NDArray[Any]], compression: str = "none"
) -> tuple[list[dict[str, Any]], bytes]:
    """Serialise named arrays to (specs, blob); ``compression='int8'`` stores int8 + scale."""
    if compression not in COMPRESSIONS:
        raise ProtocolError(f"unknown compression {compression!r}")
    specs: list[dict[str, Any]] = []
    parts: list[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        spec: dict[str, Any] = {"name": name, "shape": list(np.shape(arr))}
        if compression == "int8":
            q, scale = quantize_int8(arr)
            raw = q.tobytes()
            spec.update(dtype="int8", scale=scale)
        else:
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
            spec["dtype"] = "float32"
        spec.update(offset=offset, nbytes=len(raw))
        offset += len(raw)
        specs.append(spec)
        parts.append(raw)
    return specs, b"".join(parts)


def unpack_tensors(specs: Any, blob: bytes, *, blob_offset: int = 0) -> Tensors:
    """Inverse of :func:`pack_tensors`; every length and offset is checked first.

    Returns float32 arrays (int8 tensors are dequantized). Non-finite values are *not* rejected
    here: that is the aggregator's validation policy (so poisoned updates are counted).
    """
    if not isinstance(specs, list) or len(specs) > MAX_TENSORS:
        raise ProtocolError("tensor specs missing or too many")
    out: Tensors = {}
    total = 0
    for spec in specs:
        if not isinstance(spec, dict):
            raise ProtocolError("tensor spec is not an object")
        name = text_field(spec, "name", 128)
        if name in out or not name:
            raise ProtocolError(f"bad or duplicate tensor name {name!r}")
        dtype = _DTYPES.get(require_field(spec, "dtype", str))
        if dtype is None:
            raise ProtocolError(f"tensor {name}: unsupported dtype {spec.get('dtype')!r}")
        shape = require_field(spec, "shape", list)
        if len(shape) > 8 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise ProtocolError(f"tensor {name}: bad shape {shape!r}")
        count = math.prod(shape)
        total += count
        if total > MAX_ELEMENTS:
            raise ProtocolError(f"more than {MAX_ELEMENTS} tensor elements")
        offset = int_field(spec, "offset", 0, MAX_MESSAGE) + blob_offset
        nbytes = int_field(spec, "nbytes", 0, MAX_MESSAGE)
        if nbytes != count * dtype.itemsize or offset < 0 or offset + nbytes > len(blob):
            raise ProtocolError(
                f"tensor {name}: {nbytes} bytes at {offset} do not fit shape {shape}"
            )
        arr = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape)
        if dtype == _DTYPES["int8"]:
            scale = number_field(spec, "scale", 0.0, 1e30)
            out[name] = (arr.astype(np.float32) * np.float32(scale)).astype(np.float32)
        else:
            out[name] = arr.astype(np.float32)
    return out
