"""Federated-learning payloads: round announcements, global models, client updates, chunks.

All payloads use the envelope of :mod:`common.protocol`. Tensors travel in the envelope blob
(codec in :mod:`common.fl_tensors`); messages larger than a configurable limit are split into
``chunk`` envelopes (:mod:`common.fl_chunks`). Both are re-exported here, so
``from common import fl_protocol as fl`` gives the whole federated wire API.

Topics (see :mod:`common.protocol`)::

    medchain/v1/round/current        retained RoundAnnouncement (MQTT 5 message expiry = deadline)
    medchain/v1/model/{version}      retained ModelRelease (chunked when large)
    medchain/v1/update/{client_id}   ClientUpdate (QoS 1, idempotent by update_id)

Every decoder takes untrusted bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.fl_chunks import Reassembler, split_message
from common.fl_tensors import (
    COMPRESSIONS,
    MAX_ELEMENTS,
    MAX_MESSAGE,
    MAX_TENSORS,
    FloatArray,
    Tensors,
    compression_error,
    pack_tensors,
    quantize_int8,
    require_field,
    require_number,
    unpack_tensors,
)
from common.protocol import ProtocolError, check_client_id, decode, encode

__all__ = [
    "COMPRESSIONS",
    "MAX_ELEMENTS",
    "MAX_MESSAGE",
    "MAX_TENSORS",
    "MODES",
    "ClientUpdate",
    "FloatArray",
    "ModelRelease",
    "Reassembler",
    "RoundAnnouncement",
    "RoundConfig",
    "Tensors",
    "compression_error",
    "decode_model",
    "decode_round",
    "decode_update",
    "encode_model",
    "encode_round",
    "encode_update",
    "make_round_id",
    "pack_tensors",
    "quantize_int8",
    "split_message",
    "unpack_tensors",
    "update_id_for",
]

MODES = ("head", "full")


# --------------------------------------------------------------------------- round announcement
@dataclass(frozen=True, slots=True)
class RoundConfig:
    """Hyper-parameters of one round; they travel with the announcement.

    Attributes
    ----------
    mode : str
        ``head`` (numpy softmax head on frozen int8 embeddings) or ``full`` (torch).
    local_epochs : int
        Passes over the local labelled examples.
    lr : float
        Local learning rate.
    batch_size : int
        Local mini-batch size.
    mu : float
        FedProx proximal coefficient (0 = plain FedAvg local objective).
    clip_norm : float
        Client-side L2 bound on the update (0 = none); the aggregator also enforces its own.
    compression : str
        ``int8`` (per-tensor scale) or ``none``.
    max_examples : int
        Cap on local examples per round (bounds device time).
    """

    mode: str = "head"
    local_epochs: int = 2
    lr: float = 0.1
    batch_size: int = 64
    mu: float = 0.0
    clip_norm: float = 0.0
    compression: str = "int8"
    max_examples: int = 20000

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundConfig:
        """Parse and range-check (raises ProtocolError)."""
        mode = require_field(d, "mode", str)
        comp = require_field(d, "compression", str)
        if mode not in MODES or comp not in COMPRESSIONS:
            raise ProtocolError(f"bad mode/compression {mode!r}/{comp!r}")
        return cls(
            mode=mode,
            local_epochs=int(require_number(d, "local_epochs", 1, 1000)),
            lr=require_number(d, "lr", 0.0, 100.0),
            batch_size=int(require_number(d, "batch_size", 1, 1_000_000)),
            mu=require_number(d, "mu", 0.0, 1e6),
            clip_norm=require_number(d, "clip_norm", 0.0, 1e12),
            compression=comp,
            max_examples=int(require_number(d, "max_examples", 1, 1e9)),
        )


@dataclass(frozen=True, slots=True)
class RoundAnnouncement:
    """The retained ``round/current`` message.

    Attributes
    ----------
    round_id : str
        Unique per attempt: ``{run_id}-r{round_no:04d}-a{attempt}``.
    run_id : str
        The training run (one press of "start training").
    round_no, total_rounds, attempt : int
        1-based round number, planned rounds, retry counter (0 = first try).
    model_version, model_sha256 : str
        Global model the clients start from (``model/{version}`` topic) and its blob hash.
    deadline_ns, issued_ns : int
        Reporting deadline and issue time, ns since the Unix epoch.
    selected : tuple of str
        Client ids asked to train this round.
    config : RoundConfig
        Local training hyper-parameters.
    """

    round_id: str
    run_id: str
    round_no: int
    total_rounds: int
    attempt: int
    model_version: str
    model_sha256: str
    deadline_ns: int
    issued_ns: int
    selected: tuple[str, ...]
    config: RoundConfig = field(default_factory=RoundConfig)


def make_round_id(run_id: str, round_no: int, attempt: int) -> str:
    """The id of one attempt of one round (safe as a topic level)."""
    return check_client_id(f"{run_id}-r{round_no:04d}-a{attempt}")


def encode_round(a: RoundAnnouncement) -> bytes:
    """Encode a round announcement; the selected ids go in the blob (they can be thousands)."""
    body = {
        "round_id": a.round_id,
        "run_id": a.run_id,
        "round_no": a.round_no,
        "total_rounds": a.total_rounds,
        "attempt": a.attempt,
        "model_version": a.model_version,
        "model_sha256": a.model_sha256,
        "deadline_ns": a.deadline_ns,
        "issued_ns": a.issued_ns,
        "config": a.config.to_dict(),
    }
    return encode("round", body, "\n".join(a.selected).encode())


def decode_round(payload: bytes) -> RoundAnnouncement:
    """Decode a round announcement (raises ProtocolError)."""
    env = decode(payload, MAX_MESSAGE)
    if env.kind != "round":
        raise ProtocolError(f"expected a 'round' payload, got {env.kind!r}")
    b = env.body
    try:
        selected = tuple(env.blob.decode().split("\n")) if env.blob else ()
    except UnicodeDecodeError as exc:
        raise ProtocolError("selected client list is not UTF-8") from exc
    for cid in selected:
        check_client_id(cid)
    cfg = require_field(b, "config", dict)
    round_no = require_field(b, "round_no", int)
    total = require_field(b, "total_rounds", int)
    if not (1 <= round_no <= total):
        raise ProtocolError(f"round {round_no} of {total} out of range")
    return RoundAnnouncement(
        round_id=check_client_id(require_field(b, "round_id", str)),
        run_id=require_field(b, "run_id", str),
        round_no=round_no,
        total_rounds=total,
        attempt=require_field(b, "attempt", int),
        model_version=check_client_id(require_field(b, "model_version", str)),
        model_sha256=require_field(b, "model_sha256", str),
        deadline_ns=require_field(b, "deadline_ns", int),
        issued_ns=require_field(b, "issued_ns", int),
        selected=selected,
        config=RoundConfig.from_dict(cfg),
    )


# --------------------------------------------------------------------------- global model
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
        "metrics": m.metrics,
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
    for f in require_field(b, "files", list):
        if not isinstance(f, dict):
            raise ProtocolError("file spec is not an object")
        name, off, n = (
            require_field(f, "name", str),
            require_field(f, "offset", int),
            require_field(f, "nbytes", int),
        )
        if off < 0 or n < 0 or off + n > len(env.blob):
            raise ProtocolError(f"file {name}: {n} bytes at {off} outside the blob")
        files[name] = env.blob[off : off + n]
    metrics = b.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ProtocolError("metrics is not an object")
    return ModelRelease(
        check_client_id(require_field(b, "version", str)),
        require_field(b, "round_no", int),
        tensors,
        files,
        metrics,
    )


# --------------------------------------------------------------------------- client update
@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One client's contribution to one round.

    Attributes
    ----------
    round_id, client_id : str
        Which attempt and which device.
    base_version : str
        Model version the delta is relative to.
    n_examples : int
        Local labelled examples used (the FedAvg weight).
    delta : dict of str to ndarray float32
        ``local - global`` per tensor (dequantized on decode).
    compression : str
        How the delta travelled (``int8`` or ``none``).
    compression_error : float
        Relative L2 error the client measured for its compression (reported, bounded).
    metrics : dict of str to float
        Local training metrics (``loss``, ``accuracy``, ``train_s``...).
    """

    round_id: str
    client_id: str
    base_version: str
    n_examples: int
    delta: Tensors
    compression: str = "int8"
    compression_error: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def update_id(self) -> str:
        """Deterministic id: a redelivered or re-sent update for the same round dedupes."""
        return update_id_for(self.round_id, self.client_id)


def update_id_for(round_id: str, client_id: str) -> str:
    """``sha256(round_id|client_id)`` truncated to 32 hex digits."""
    return hashlib.sha256(f"{round_id}|{client_id}".encode()).hexdigest()[:32]


def encode_update(u: ClientUpdate) -> bytes:
    """Encode an update, compressing the delta as ``u.compression`` says."""
    specs, blob = pack_tensors(u.delta, u.compression)
    body = {
        "round_id": u.round_id,
        "client_id": u.client_id,
        "update_id": u.update_id,
        "base_version": u.base_version,
        "n_examples": u.n_examples,
        "compression": u.compression,
        "compression_error": u.compression_error,
        "metrics": {k: float(v) for k, v in u.metrics.items() if math.isfinite(v)},
        "tensors": specs,
    }
    return encode("update", body, blob)


def decode_update(payload: bytes, max_size: int = MAX_MESSAGE) -> ClientUpdate:
    """Decode an update (raises ProtocolError); values are not checked for finiteness here."""
    env = decode(payload, max_size)
    if env.kind != "update":
        raise ProtocolError(f"expected an 'update' payload, got {env.kind!r}")
    b = env.body
    u = ClientUpdate(
        round_id=check_client_id(require_field(b, "round_id", str)),
        client_id=check_client_id(require_field(b, "client_id", str)),
        base_version=require_field(b, "base_version", str),
        n_examples=require_field(b, "n_examples", int),
        delta=unpack_tensors(b.get("tensors"), env.blob),
        compression=require_field(b, "compression", str),
        compression_error=require_number(b, "compression_error", 0.0, 1e6),
        metrics={
            str(k): float(v)
            for k, v in dict(require_field(b, "metrics", dict)).items()
            if isinstance(v, (int, float))
        },
    )
    if b.get("update_id") != u.update_id:
        raise ProtocolError("update_id does not match round_id and client_id")
    if u.compression not in COMPRESSIONS:
        raise ProtocolError(f"unknown compression {u.compression!r}")
    return u
