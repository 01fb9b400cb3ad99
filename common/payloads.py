"""Typed payloads of the edge-facing channels (raw, live, status, label, labelack).

Each ``encode_*`` returns envelope bytes (see :mod:`common.protocol`); each ``decode_*`` takes
untrusted bytes and returns a typed value or raises :class:`~common.protocol.ProtocolError`.
Sample arrays travel as a little-endian float32 blob (shape in the body), never as JSON lists,
so a live chunk stays small. Predictions and their receipts (``pred``, ``predack``) are in
:mod:`common.pred_payloads`; federated-learning payloads (round, model, update) live with the
aggregator's protocol code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.protocol import (
    DEFAULT_MAX_PAYLOAD,
    Envelope,
    ProtocolError,
    check_client_id,
    decode,
    encode,
)
from common.types import SignalChunk, StreamKind, rate_problem
from common.wire_fields import (
    MAX_NS,
    bool_field,
    check_text,
    int_field,
    list_field,
    name_field,
    number_field,
    optional_number,
    require_field,
    text_field,
)

MAX_CHANNELS = 16
MAX_SAMPLES = 65536
MAX_ACK_IDS = 500  # label ids per ``labelack`` message (a device acks in batches)
MAX_LABEL_ID_LEN = 128
MIN_LIVE_FS = 1.0  # Hz, slowest live signal the web draws
MAX_MODEL_VERSION = 64  # characters of a model version (beats, statuses)


def expect_kind(env: Envelope, kind: str) -> Envelope:
    """``env`` if it is a ``kind`` payload, else ProtocolError."""
    if env.kind != kind:
        raise ProtocolError(f"expected a {kind!r} payload, got {env.kind!r}")
    return env


def encode_chunk(kind: str, client_id: str, chunk: SignalChunk) -> bytes:
    """Encode samples as a ``raw`` (replay) or ``live`` (web plot) payload."""
    data = np.ascontiguousarray(chunk.samples, dtype="<f4")
    body = {
        "client_id": client_id,
        "stream": str(chunk.kind),
        "fs": chunk.fs,
        "t0_ns": chunk.t0_ns,
        "seq": chunk.seq,
        "shape": list(data.shape),
    }
    return encode(kind, body, data.tobytes())


def decode_chunk(payload: bytes, kind: str) -> tuple[str, SignalChunk]:
    """Decode a ``raw`` or ``live`` payload into (client_id, chunk)."""
    env = expect_kind(decode(payload, DEFAULT_MAX_PAYLOAD), kind)
    b = env.body
    client_id = check_client_id(text_field(b, "client_id", 64))
    try:
        stream = StreamKind(text_field(b, "stream", 16))
    except ValueError as exc:
        raise ProtocolError(f"unknown stream {b.get('stream')!r}") from exc
    fs = number_field(b, "fs", 0.0, 10_000.0)
    if kind == "raw" and (problem := rate_problem(stream, fs)):  # the edge processes raw:
        raise ProtocolError(problem)  # one stray chunk must not stop it
    if fs < MIN_LIVE_FS:  # live is only drawn; a subnormal rate made its times infinite
        raise ProtocolError(f"sampling rate {fs:g} Hz is below {MIN_LIVE_FS:g} Hz")
    shape = require_field(b, "shape", list)
    if len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ProtocolError(f"bad shape {shape!r}")
    n, ch = shape
    if not (0 < n <= MAX_SAMPLES and 0 < ch <= MAX_CHANNELS):
        raise ProtocolError(f"shape {shape} out of range")
    if len(env.blob) != n * ch * 4:
        raise ProtocolError(f"blob of {len(env.blob)} bytes does not hold {n}x{ch} float32")
    samples = np.frombuffer(env.blob, dtype="<f4").reshape(n, ch).astype(np.float64)
    if not np.all(np.isfinite(samples)):
        raise ProtocolError("non-finite samples")
    t0 = int_field(b, "t0_ns", 0, MAX_NS)
    seq = int_field(b, "seq", 0)
    return client_id, SignalChunk(stream, fs, t0, samples, seq)


@dataclass(frozen=True, slots=True)
class Status:
    """Retained device status (also the Last Will with ``online=False``).

    ``session`` and ``seq`` order one device's statuses whatever order a broker delivers them
    in (as Sparkplug B's ``bdSeq`` does): ``session`` is the connection's number (Unix ns of
    its CONNECT, rising), ``seq`` counts the statuses of that connection and is
    :data:`WILL_SEQ` in the Last Will, which ends it. 0/0: unordered (applied as it comes).
    """

    client_id: str
    online: bool
    t_ns: int
    model_version: str = ""
    battery_pct: float | None = None
    detail: str = ""
    session: int = 0
    seq: int = 0

    @property
    def stamp(self) -> tuple[int, int] | None:
        """``(session, seq)``, or None for an unordered status."""
        return (self.session, self.seq) if self.session else None


WILL_SEQ = (1 << 53) - 1  # a Last Will's seq: after every status of its connection


def supersedes(status: Status, last: tuple[int, int] | None) -> bool:
    """True when ``status`` is to be applied after one stamped ``last``: it is unordered, or
    from a later connection, or later in the same one (a Last Will that a clustered broker
    delivers after the device's next connection announced itself is not)."""
    stamp = status.stamp
    return stamp is None or last is None or stamp >= last


def encode_status(s: Status) -> bytes:
    """Encode a ``status`` payload."""
    return encode(
        "status",
        {
            "client_id": s.client_id,
            "online": s.online,
            "t_ns": s.t_ns,
            "model_version": s.model_version,
            "battery_pct": s.battery_pct,
            "detail": s.detail,
            "session": s.session,
            "seq": s.seq,
        },
    )


def decode_status(payload: bytes) -> Status:
    """Decode a ``status`` payload."""
    b = expect_kind(decode(payload), "status").body
    return Status(
        check_client_id(text_field(b, "client_id", 64)),
        bool_field(b, "online"),
        int_field(b, "t_ns", 0, MAX_NS),
        text_field(b, "model_version", MAX_MODEL_VERSION, default=""),
        optional_number(b, "battery_pct", 0.0, 100.0),
        text_field(b, "detail", default=""),
        int_field(b, "session", 0, MAX_NS, default=0),
        int_field(b, "seq", 0, WILL_SEQ, default=0),
    )


@dataclass(frozen=True, slots=True)
class Label:
    """A clinician's label for one beat or event, delivered to the patient's device."""

    label_id: str
    client_id: str
    t_ns: int
    label: str
    target: str = "beat"  # "beat" or "event"
    author: str = ""


def encode_label(lb: Label) -> bytes:
    """Encode a ``label`` payload for ``medchain/v1/label/{client_id}``."""
    return encode(
        "label",
        {
            "label_id": lb.label_id,
            "client_id": lb.client_id,
            "t_ns": lb.t_ns,
            "label": lb.label,
            "target": lb.target,
            "author": lb.author,
        },
    )


def decode_label(payload: bytes) -> Label:
    """Decode a ``label`` payload."""
    b = expect_kind(decode(payload), "label").body
    target = text_field(b, "target", 8)
    if target not in ("beat", "event"):
        raise ProtocolError(f"bad label target {target!r}")
    return Label(
        text_field(b, "label_id", MAX_LABEL_ID_LEN),
        check_client_id(text_field(b, "client_id", 64)),
        int_field(b, "t_ns", 0, MAX_NS),
        name_field(b, "label"),
        target,
        text_field(b, "author", 128, default=""),
    )


@dataclass(frozen=True, slots=True)
class LabelAck:
    """A device's receipt for clinician labels it has stored for local training."""

    client_id: str
    label_ids: tuple[str, ...]
    t_ns: int


def encode_label_ack(ack: LabelAck) -> bytes:
    """Encode a ``label_ack`` payload for ``medchain/v1/labelack/{client_id}``."""
    if not 0 < len(ack.label_ids) <= MAX_ACK_IDS:
        raise ValueError(f"a label ack holds 1..{MAX_ACK_IDS} ids, got {len(ack.label_ids)}")
    return encode(
        "label_ack",
        {"client_id": ack.client_id, "label_ids": list(ack.label_ids), "t_ns": ack.t_ns},
    )


def decode_label_ack(payload: bytes) -> LabelAck:
    """Decode a ``label_ack`` payload (1..500 non-empty string ids of <= 128 characters)."""
    b = expect_kind(decode(payload), "label_ack").body
    ids = list_field(b, "label_ids", MAX_ACK_IDS)
    if not ids or not all(
        isinstance(i, str) and i and check_text(i, "label id", MAX_LABEL_ID_LEN) for i in ids
    ):
        raise ProtocolError("label_ids must be 1..500 non-empty strings of <= 128 characters")
    return LabelAck(
        check_client_id(text_field(b, "client_id", 64)), tuple(ids), int_field(b, "t_ns", 0, MAX_NS)
    )
