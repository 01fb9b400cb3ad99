"""Global model releases: the retained ``model/{version}`` message (chunked when large).

Part of the federated wire API re-exported by :mod:`common.fl_protocol`. Tensors then
deployable files travel in the envelope blob; the decoder takes untrusted bytes and raises
:class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from common.fl_tensors import MAX_MESSAGE, Tensors, pack_tensors, unpack_tensors
from common.protocol import ProtocolError, check_client_id, decode, encode
from common.wire_fields import int_field, json_field, list_field, text_field

MAX_FILES = 16  # deployable files per release (model, card, head...)

__all__ = ["ModelRelease", "decode_model", "encode_model"]


@dataclass(frozen=True, slots=True)
class ModelRelease:
    """A global model version as published on ``model/{version}``.

    Attributes
    ----------
    version : str
        Model version (topic level).
    round_no : int
        Round that produced it (0 = the initial model).
    tensors : dict of str to ndarray float32
        The federated weights (``head.weight`` (C, D), ``head.bias`` (C), or all weights).
    files : dict of str to bytes
        Deployable artifacts: ``model.onnx`` (int8), ``model.card.json``.
    metrics : dict
        Evaluation metrics of this version (JSON-compatible).
    """

    version: str
    round_no: int
    tensors: Tensors
    files: dict[str, bytes] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """Hash of the encoded release (what announcements refer to)."""
        return hashlib.sha256(encode_model(self)).hexdigest()


def encode_model(m: ModelRelease) -> bytes:
    """Encode a model release; tensors then files in the blob."""
    specs, blob = pack_tensors(m.tensors)
    files = []
    offset = len(blob)
    for name, data in m.files.items():
        files.append({"name": name, "offset": offset, "nbytes": len(data)})
        offset += len(data)
    body = {
        "version": m.version,
        "round_no": m.round_no,
        "tensors": specs,
        "files": files,
        # sorted: a release's bytes (and the sha256 a round announces) must not depend on the
        # order its metrics were added in (a device rebuilding it from a patch gets them sorted)
        "metrics": {k: m.metrics[k] for k in sorted(m.metrics)},
    }
    return encode("model", body, blob + b"".join(m.files.values()))


def decode_model(payload: bytes) -> ModelRelease:
    """Decode a model release (raises ProtocolError)."""
    env = decode(payload, MAX_MESSAGE)
    if env.kind != "model":
        raise ProtocolError(f"expected a 'model' payload, got {env.kind!r}")
    b = env.body
    tensors = unpack_tensors(b.get("tensors"), env.blob)
    files: dict[str, bytes] = {}
    for f in list_field(b, "files", MAX_FILES):
        if not isinstance(f, dict):
            raise ProtocolError("file spec is not an object")
        name = text_field(f, "name", 128)
        off, n = int_field(f, "offset", 0, MAX_MESSAGE), int_field(f, "nbytes", 0, MAX_MESSAGE)
        if off + n > len(env.blob) or not name or name in files:
            raise ProtocolError(f"file {name!r}: {n} bytes at {off} outside the blob or repeated")
        files[name] = env.blob[off : off + n]
    return ModelRelease(
        check_client_id(text_field(b, "version", 64)),
        int_field(b, "round_no", 0, 10**9),
        tensors,
        files,
        json_field(b, "metrics", max_items=256, default={}),
    )
