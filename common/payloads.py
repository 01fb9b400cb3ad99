"""Typed payloads of the edge-facing channels (raw, live, pred, status, label, labelack).

Each ``encode_*`` returns envelope bytes (see :mod:`common.protocol`); each ``decode_*`` takes
untrusted bytes and returns a typed value or raises :class:`~common.protocol.ProtocolError`.
Sample arrays travel as a little-endian float32 blob (shape in the body), never as JSON lists,
so a live chunk stays small. Federated-learning payloads (round, model, update) live with the
aggregator's protocol code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.protocol import (
    DEFAULT_MAX_PAYLOAD,
    Envelope,
    ProtocolError,
    decode,
    encode,
    require_field,
)
from common.types import BeatPrediction, Event, SignalChunk, StreamKind

MAX_CHANNELS = 16
MAX_SAMPLES = 65536
MAX_ACK_IDS = 500  # label ids per ``labelack`` message (a device acks in batches)
MAX_LABEL_ID_LEN = 128


def _expect(env: Envelope, kind: str) -> Envelope:
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
    env = _expect(decode(payload, DEFAULT_MAX_PAYLOAD), kind)
    b = env.body
    client_id = require_field(b, "client_id", str)
    try:
        stream = StreamKind(require_field(b, "stream", str))
    except ValueError as exc:
        raise ProtocolError(f"unknown stream {b.get('stream')!r}") from exc
    fs = float(require_field(b, "fs", (int, float)))
    if not (0 < fs <= 10_000) or not math.isfinite(fs):
        raise ProtocolError(f"sampling rate {fs} Hz out of range")
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
    t0 = require_field(b, "t0_ns", int)
    seq = require_field(b, "seq", int)
    return client_id, SignalChunk(stream, fs, t0, samples, seq)


def encode_predictions(client_id: str, beats: list[BeatPrediction], events: list[Event]) -> bytes:
    """Encode a batch of beat predictions and events for ``medchain/v1/pred/{client_id}``."""
    body = {
        "client_id": client_id,
        "beats": [
            {
                "t_ns": b.t_ns,
                "sample": b.sample,
                "label": b.label,
                "probs": b.probs,
                "model_version": b.model_version,
                "rr_s": None if math.isnan(b.rr_s) else b.rr_s,
            }
            for b in beats
        ],
        "events": [
            {
                "event_id": e.event_id,
                "kind": e.kind,
                "t_start_ns": e.t_start_ns,
                "t_end_ns": e.t_end_ns,
                "details": e.details,
            }
            for e in events
        ],
    }
    return encode("pred", body)


def decode_predictions(payload: bytes) -> tuple[str, list[BeatPrediction], list[Event]]:
    """Decode a ``pred`` payload."""
    b = _expect(decode(payload), "pred").body
    client_id = require_field(b, "client_id", str)
    try:
        beats = [
            BeatPrediction(
                client_id,
                int(x["t_ns"]),
                int(x["sample"]),
                str(x["label"]),
                {str(k): float(v) for k, v in dict(x["probs"]).items()},
                str(x["model_version"]),
                float("nan") if x.get("rr_s") is None else float(x["rr_s"]),
            )
            for x in require_field(b, "beats", list)
        ]
        events = [
            Event(
                str(x["event_id"]),
                client_id,
                str(x["kind"]),
                int(x["t_start_ns"]),
                int(x["t_end_ns"]),
                dict(x.get("details", {})),
            )
            for x in require_field(b, "events", list)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed pred payload: {exc}") from exc
    return client_id, beats, events


@dataclass(frozen=True, slots=True)
class Status:
    """Retained device status (also the Last Will with ``online=False``)."""

    client_id: str
    online: bool
    t_ns: int
    model_version: str = ""
    battery_pct: float | None = None
    detail: str = ""


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
        },
    )


def decode_status(payload: bytes) -> Status:
    """Decode a ``status`` payload."""
    b = _expect(decode(payload), "status").body
    bat = b.get("battery_pct")
    if bat is not None and not isinstance(bat, (int, float)):
        raise ProtocolError("battery_pct is not a number")
    return Status(
        require_field(b, "client_id", str),
        require_field(b, "online", bool),
        require_field(b, "t_ns", int),
        str(b.get("model_version", "")),
        None if bat is None else float(bat),
        str(b.get("detail", "")),
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
    b = _expect(decode(payload), "label").body
    target = require_field(b, "target", str)
    if target not in ("beat", "event"):
        raise ProtocolError(f"bad label target {target!r}")
    return Label(
        require_field(b, "label_id", str),
        require_field(b, "client_id", str),
        require_field(b, "t_ns", int),
        require_field(b, "label", str),
        target,
        str(b.get("author", "")),
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
    b = _expect(decode(payload), "label_ack").body
    ids = require_field(b, "label_ids", list)
    if not 0 < len(ids) <= MAX_ACK_IDS:
        raise ProtocolError(f"label_ids holds {len(ids)} ids (1..{MAX_ACK_IDS} allowed)")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_LABEL_ID_LEN for i in ids):
        raise ProtocolError("label_ids must be non-empty strings of at most 128 characters")
    return LabelAck(require_field(b, "client_id", str), tuple(ids), require_field(b, "t_ns", int))
