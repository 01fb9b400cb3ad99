"""Model patches: a release sent as what changed since the version a device already holds.

A device that holds release ``v{m}`` gets ``v{n}`` on ``model/v{n}/from/v{m}`` as a patch:

- the federated tensors as **int8 deltas** (per-tensor scale), the same codec as the uplink;
  the server defines ``v{n}``'s tensors as ``v{m}``'s plus exactly these dequantized deltas
  (:func:`downlink_tensors`), so both sides hold bit-identical float32 weights;
- every deployable file (int8 ONNX, card) as a zstd delta against the old file (zstd with the
  old file as a raw-content dictionary): a head round changes a few hundred bytes of the ONNX,
  a whole-model round its weights;
- the new metrics (a zstd delta of their JSON against the old ones), version and round number.

:func:`apply_patch` rebuilds the whole release; its wire sha256 must equal the one the round
announcement names, so a patch is exactly as trustworthy as the full release (a device that
cannot apply one fetches the full ``model/v{n}``). Every decoder takes untrusted bytes and
raises :class:`~common.protocol.ProtocolError` only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np
import zstandard

from common.fl_release import ModelRelease, encode_model
from common.fl_tensors import MAX_MESSAGE, Tensors, quantize_int8, unpack_tensors
from common.protocol import ProtocolError, check_client_id, decode, encode
from common.wire_fields import int_field, json_field, list_field, text_field

__all__ = [
    "ModelPatch",
    "apply_patch",
    "decode_patch",
    "downlink_tensors",
    "encode_patch",
    "make_patch",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_FILES = 16
METRICS = ":metrics"  # the files entry holding the metrics' delta (not a file name)
LEVEL = 19  # patches are made once per round and sent to every device: compress hard


@dataclass(frozen=True, slots=True)
class ModelPatch:
    """``version`` as a patch of ``base_version`` (see the module docstring).

    Attributes
    ----------
    version, base_version : str
        The new release and the one it patches.
    base_sha256, result_sha256 : str
        Wire sha256 of the base release and of the rebuilt new one.
    specs : list of dict
        The int8 tensor deltas' specs (:func:`common.fl_tensors.pack_tensors` layout).
    files : dict of str to bytes
        zstd deltas of the new files against the base's files of the same name (a file the
        base lacks is compressed without a dictionary).
    round_no : int
        Round of the new release.
    metrics : dict
        Metrics of the new release.
    blob : bytes
        The tensor bytes the specs point into.
    """

    version: str
    base_version: str
    base_sha256: str
    result_sha256: str
    specs: list[dict[str, object]]
    files: dict[str, bytes]
    round_no: int
    metrics: dict[str, object]
    blob: bytes


def downlink_tensors(
    old: Tensors, new: Tensors
) -> tuple[Tensors, dict[str, tuple[np.ndarray, float]]]:
    """The new tensors as devices will rebuild them, and their int8 deltas.

    ``old + dequantize(int8(new - old))`` per tensor in float32: the server publishes exactly
    these, so a device applying the patch gets the same bits. Returns (tensors, {name: (q, s)}).
    """
    exact: Tensors = {}
    deltas: dict[str, tuple[np.ndarray, float]] = {}
    for k, v in new.items():
        q, scale = quantize_int8(v.astype(np.float32) - old[k].astype(np.float32))
        exact[k] = (old[k].astype(np.float32) + q.astype(np.float32) * np.float32(scale)).astype(
            np.float32
        )
        deltas[k] = (q, scale)
    return exact, deltas


def make_patch(
    base: ModelRelease, new: ModelRelease, deltas: dict[str, tuple[np.ndarray, float]]
) -> ModelPatch:
    """The patch from ``base`` to ``new`` (whose tensors came from :func:`downlink_tensors`)."""
    specs, parts, offset = [], [], 0
    for name, (q, scale) in deltas.items():
        raw = np.ascontiguousarray(q, dtype=np.int8).tobytes()
        specs.append({"name": name, "shape": list(q.shape), "dtype": "int8", "scale": scale,
                      "offset": offset, "nbytes": len(raw)})  # fmt: skip
        parts.append(raw)
        offset += len(raw)
    files = {name: _delta(base.files.get(name, b""), data) for name, data in new.files.items()}
    files[METRICS] = _delta(_metrics_json(base.metrics), _metrics_json(new.metrics))
    return ModelPatch(new.version, base.version, _sha(encode_model(base)), _sha(encode_model(new)),
                      specs, files, new.round_no, {}, b"".join(parts))  # fmt: skip


def apply_patch(base: ModelRelease, patch: ModelPatch) -> ModelRelease:
    """The new release rebuilt from ``base`` (raises ProtocolError when it is not the one the
    patch was made for, or the result does not hash to ``patch.result_sha256``)."""
    if base.version != patch.base_version or _sha(encode_model(base)) != patch.base_sha256:
        raise ProtocolError(f"patch of {patch.base_version} does not apply to {base.version}")
    deltas = unpack_tensors(patch.specs, patch.blob)
    if set(deltas) != set(base.tensors):
        raise ProtocolError("patch tensors do not match the base release's")
    tensors = {
        k: (base.tensors[k].astype(np.float32) + d).astype(np.float32) for k, d in deltas.items()
    }
    try:
        deltas_of_files = dict(patch.files)
        metrics_delta = deltas_of_files.pop(METRICS, b"")
        files = {n: _undelta(base.files.get(n, b""), d) for n, d in deltas_of_files.items()}
        raw = _undelta(_metrics_json(base.metrics), metrics_delta) if metrics_delta else b""
        metrics = json.loads(raw) if raw else dict(patch.metrics)
    except (zstandard.ZstdError, ValueError) as exc:
        raise ProtocolError(f"file delta does not decompress: {exc}") from exc
    if not isinstance(metrics, dict):
        raise ProtocolError("patched metrics are not an object")
    rebuilt = ModelRelease(patch.version, patch.round_no, tensors, files, metrics)
    if _sha(encode_model(rebuilt)) != patch.result_sha256:
        raise ProtocolError(f"patch to {patch.version} rebuilds a release with another sha256")
    return rebuilt


def encode_patch(p: ModelPatch) -> bytes:
    """Encode a patch: tensor deltas, then file deltas, in the blob."""
    files, offset = [], len(p.blob)
    for name, data in p.files.items():
        files.append({"name": name, "offset": offset, "nbytes": len(data)})
        offset += len(data)
    body = {"version": p.version, "base_version": p.base_version, "base_sha256": p.base_sha256,
            "result_sha256": p.result_sha256, "round_no": p.round_no, "tensors": p.specs,
            "files": files, "metrics": p.metrics}  # fmt: skip
    return encode("model_patch", body, p.blob + b"".join(p.files.values()))


def decode_patch(payload: bytes) -> ModelPatch:
    """Decode a patch (raises ProtocolError)."""
    env = decode(payload, MAX_MESSAGE)
    if env.kind != "model_patch":
        raise ProtocolError(f"expected a 'model_patch' payload, got {env.kind!r}")
    b = env.body
    specs = list_field(b, "tensors", 256)
    unpack_tensors(specs, env.blob)  # bounds-checks every spec against the blob
    files: dict[str, bytes] = {}
    tensor_end = max((int(s["offset"]) + int(s["nbytes"]) for s in specs), default=0)
    for f in list_field(b, "files", MAX_FILES):
        if not isinstance(f, dict):
            raise ProtocolError("file spec is not an object")
        name = text_field(f, "name", 128)
        off, n = int_field(f, "offset", 0, MAX_MESSAGE), int_field(f, "nbytes", 0, MAX_MESSAGE)
        if off < tensor_end or off + n > len(env.blob) or not name or name in files:
            raise ProtocolError(f"patch file {name!r}: {n} bytes at {off} outside its part")
        files[name] = env.blob[off : off + n]
    return ModelPatch(
        check_client_id(text_field(b, "version", 64)),
        check_client_id(text_field(b, "base_version", 64)),
        text_field(b, "base_sha256", 64, _SHA256),
        text_field(b, "result_sha256", 64, _SHA256),
        specs,
        files,
        int_field(b, "round_no", 0, 10**9),
        json_field(b, "metrics", max_items=256, default={}),
        env.blob[:tensor_end],
    )


def _metrics_json(metrics: dict[str, object]) -> bytes:
    return json.dumps(metrics, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _delta(old: bytes, new: bytes) -> bytes:
    if not old:
        return zstandard.ZstdCompressor(level=LEVEL).compress(new)
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=d).compress(new)


def _undelta(old: bytes, delta: bytes) -> bytes:
    # a bounded output: a release is at most MAX_MESSAGE bytes
    if not old:
        return zstandard.ZstdDecompressor().decompress(delta, max_output_size=MAX_MESSAGE)
    d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdDecompressor(dict_data=d).decompress(delta, max_output_size=MAX_MESSAGE)
