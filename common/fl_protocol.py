"""Federated-learning payloads: round announcements, global models, client updates, chunks.

All payloads use the envelope of :mod:`common.protocol`. Tensors travel in the envelope blob,
never as JSON lists: the body holds one spec per tensor (name, dtype, shape, byte offset and,
for int8-compressed tensors, the per-tensor scale). Messages larger than a configurable limit are
split into ``chunk`` envelopes (:func:`split_message`) that :class:`Reassembler` puts back
together idempotently.

Topics (see :mod:`common.protocol`)::

    medchain/v1/round/current        retained RoundAnnouncement (MQTT 5 message expiry = deadline)
    medchain/v1/model/{version}      retained ModelRelease (chunked when large)
    medchain/v1/update/{client_id}   ClientUpdate (QoS 1, idempotent by update_id)

Every decoder takes untrusted bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from common.protocol import ProtocolError, check_client_id, decode, encode

FloatArray = npt.NDArray[np.float32]
Tensors = dict[str, FloatArray]

MAX_TENSORS = 256
MAX_ELEMENTS = 50_000_000  # per message; a full small CNN is ~1e5
MAX_MESSAGE = 256 * 1024 * 1024  # bytes, MQTT's own payload ceiling
MODES = ("head", "full")
COMPRESSIONS = ("none", "int8")
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int8": np.dtype("i1")}


def _req(body: Mapping[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    val = body.get(key)
    if isinstance(val, bool) and typ is not bool:
        raise ProtocolError(f"field {key!r} has type bool")
    if not isinstance(val, typ):
        raise ProtocolError(f"field {key!r} missing or not {typ}")
    return val


def _num(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float:
    val = float(_req(body, key, (int, float)))
    if not (math.isfinite(val) and lo <= val <= hi):
        raise ProtocolError(f"field {key!r}={val} outside [{lo}, {hi}]")
    return val


# --------------------------------------------------------------------------- tensor bundles
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
        name = _req(spec, "name", str)
        if name in out or not name or len(name) > 128:
            raise ProtocolError(f"bad or duplicate tensor name {name!r}")
        dtype = _DTYPES.get(_req(spec, "dtype", str))
        if dtype is None:
            raise ProtocolError(f"tensor {name}: unsupported dtype {spec.get('dtype')!r}")
        shape = _req(spec, "shape", list)
        if len(shape) > 8 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise ProtocolError(f"tensor {name}: bad shape {shape!r}")
        count = math.prod(shape)
        total += count
        if total > MAX_ELEMENTS:
            raise ProtocolError(f"more than {MAX_ELEMENTS} tensor elements")
        offset = _req(spec, "offset", int) + blob_offset
        nbytes = _req(spec, "nbytes", int)
        if nbytes != count * dtype.itemsize or offset < 0 or offset + nbytes > len(blob):
            raise ProtocolError(
                f"tensor {name}: {nbytes} bytes at {offset} do not fit shape {shape}"
            )
        arr = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape)
        if dtype == _DTYPES["int8"]:
            scale = _num(spec, "scale", 0.0, 1e30)
            out[name] = (arr.astype(np.float32) * np.float32(scale)).astype(np.float32)
        else:
            out[name] = arr.astype(np.float32)
    return out


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
        mode = _req(d, "mode", str)
        comp = _req(d, "compression", str)
        if mode not in MODES or comp not in COMPRESSIONS:
            raise ProtocolError(f"bad mode/compression {mode!r}/{comp!r}")
        return cls(
            mode=mode,
            local_epochs=int(_num(d, "local_epochs", 1, 1000)),
            lr=_num(d, "lr", 0.0, 100.0),
            batch_size=int(_num(d, "batch_size", 1, 1_000_000)),
            mu=_num(d, "mu", 0.0, 1e6),
            clip_norm=_num(d, "clip_norm", 0.0, 1e12),
            compression=comp,
            max_examples=int(_num(d, "max_examples", 1, 1e9)),
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
    cfg = _req(b, "config", dict)
    round_no = _req(b, "round_no", int)
    total = _req(b, "total_rounds", int)
    if not (1 <= round_no <= total):
        raise ProtocolError(f"round {round_no} of {total} out of range")
    return RoundAnnouncement(
        round_id=check_client_id(_req(b, "round_id", str)),
        run_id=_req(b, "run_id", str),
        round_no=round_no,
        total_rounds=total,
        attempt=_req(b, "attempt", int),
        model_version=check_client_id(_req(b, "model_version", str)),
        model_sha256=_req(b, "model_sha256", str),
        deadline_ns=_req(b, "deadline_ns", int),
        issued_ns=_req(b, "issued_ns", int),
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
    for f in _req(b, "files", list):
        if not isinstance(f, dict):
            raise ProtocolError("file spec is not an object")
        name, off, n = _req(f, "name", str), _req(f, "offset", int), _req(f, "nbytes", int)
        if off < 0 or n < 0 or off + n > len(env.blob):
            raise ProtocolError(f"file {name}: {n} bytes at {off} outside the blob")
        files[name] = env.blob[off : off + n]
    metrics = b.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ProtocolError("metrics is not an object")
    return ModelRelease(
        check_client_id(_req(b, "version", str)), _req(b, "round_no", int), tensors, files, metrics
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
        round_id=check_client_id(_req(b, "round_id", str)),
        client_id=check_client_id(_req(b, "client_id", str)),
        base_version=_req(b, "base_version", str),
        n_examples=_req(b, "n_examples", int),
        delta=unpack_tensors(b.get("tensors"), env.blob),
        compression=_req(b, "compression", str),
        compression_error=_num(b, "compression_error", 0.0, 1e6),
        metrics={
            str(k): float(v)
            for k, v in dict(_req(b, "metrics", dict)).items()
            if isinstance(v, (int, float))
        },
    )
    if b.get("update_id") != u.update_id:
        raise ProtocolError("update_id does not match round_id and client_id")
    if u.compression not in COMPRESSIONS:
        raise ProtocolError(f"unknown compression {u.compression!r}")
    return u


# --------------------------------------------------------------------------- chunking
def split_message(payload: bytes, message_id: str, limit: int) -> list[bytes]:
    """Split an encoded message into ``chunk`` envelopes of at most ``limit`` blob bytes.

    A message that fits is returned unchanged (one element). Each chunk carries the message id,
    its index, the count, the whole size and the whole sha256, so the receiver can reassemble
    out of order and verify the result.
    """
    if limit <= 0:
        raise ValueError("chunk limit must be positive")
    if len(payload) <= limit:
        return [payload]
    digest = hashlib.sha256(payload).hexdigest()
    total = -(-len(payload) // limit)
    return [
        encode(
            "chunk",
            {
                "message_id": message_id,
                "seq": i,
                "total": total,
                "size": len(payload),
                "sha256": digest,
            },
            payload[i * limit : (i + 1) * limit],
        )
        for i in range(total)
    ]


@dataclass
class _Pending:
    total: int
    size: int
    sha256: str
    first_seen: float
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Idempotent reassembly of chunked messages (pure; the caller passes the clock).

    ``feed`` returns the whole message bytes exactly once when its last missing chunk arrives;
    duplicates (QoS 1 redelivery) and chunks of already completed messages return ``None``.
    Memory is bounded: at most ``max_pending`` partial messages, each at most ``max_size`` bytes,
    dropped after ``ttl_s`` seconds without completion.

    Attributes
    ----------
    rejected : int
        Chunks rejected as inconsistent (conflicting totals, bad hash after assembly...).
    expired : int
        Partial messages dropped by the TTL or the pending limit.
    """

    def __init__(
        self, max_size: int = MAX_MESSAGE, max_pending: int = 1024, ttl_s: float = 600.0
    ) -> None:
        self.max_size = max_size
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self.rejected = 0
        self.expired = 0

    def feed(self, payload: bytes, now_s: float, max_chunk: int = MAX_MESSAGE) -> bytes | None:
        """Take one received payload; return a complete message or ``None``.

        Non-chunk payloads are returned unchanged. Raises ProtocolError for a malformed chunk.
        """
        self._expire(now_s)
        env = decode(payload, max_chunk + 65536 + 16)
        if env.kind != "chunk":
            return payload
        b = env.body
        mid = _req(b, "message_id", str)
        seq, total, size = _req(b, "seq", int), _req(b, "total", int), _req(b, "size", int)
        digest = _req(b, "sha256", str)
        if not (0 < total <= 100_000 and 0 <= seq < total and 0 < size <= self.max_size):
            self.rejected += 1
            raise ProtocolError(f"chunk {seq}/{total} of {size} bytes out of range")
        if mid in self._done:
            return None
        pend = self._pending.get(mid)
        if pend is None:
            while len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                self.expired += 1
            pend = self._pending[mid] = _Pending(total, size, digest, now_s)
        elif (pend.total, pend.size, pend.sha256) != (total, size, digest):
            self.rejected += 1
            raise ProtocolError(f"chunk of {mid} disagrees with earlier chunks")
        pend.parts.setdefault(seq, env.blob)
        if len(pend.parts) < total:
            return None
        del self._pending[mid]
        whole = b"".join(pend.parts[i] for i in range(total))
        if len(whole) != size or hashlib.sha256(whole).hexdigest() != digest:
            self.rejected += 1
            raise ProtocolError(f"reassembled {mid} fails its size/sha256 check")
        self._done[mid] = None
        while len(self._done) > 4 * self.max_pending:
            self._done.popitem(last=False)
        return whole

    @property
    def pending(self) -> int:
        """Partial messages held."""
        return len(self._pending)

    def _expire(self, now_s: float) -> None:
        for mid in [m for m, p in self._pending.items() if now_s - p.first_seen > self.ttl_s]:
            del self._pending[mid]
            self.expired += 1
