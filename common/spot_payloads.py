"""Spot-check payloads: a 30 s rhythm check requested from a device, and its one verdict.

- ``spot_check`` request on ``medchain/v1/control/{client_id}`` (the channel devices already
  read): record the next ``duration_s`` (9-60 s) of ECG and judge its rhythm.
- ``spot_result`` on ``medchain/v1/spot/{client_id}``: the verdict (class, probabilities,
  quality flags, whether the model decided at all). The device also stores it as a
  ``spot_check`` event, so it reaches the store through ``pred`` like every other event.

Decoders take untrusted bytes and read every field through :mod:`common.wire_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.protocol import ProtocolError, check_client_id, decode, encode
from common.wire_fields import (
    MAX_NS,
    bool_field,
    check_text,
    int_field,
    list_field,
    name_field,
    number_field,
    optional_number,
    text_field,
)

MIN_SPOT_S, MAX_SPOT_S = 9.0, 60.0  # the rhythm model decides from 9 s; a watch records 30 s
MAX_CLASSES = 16
MAX_FLAGS = 8
MAX_HR_BPM = 400.0


@dataclass(frozen=True, slots=True)
class SpotCheckRequest:
    """Record ``duration_s`` of ECG now and report its rhythm (``request_id`` comes back)."""

    client_id: str
    request_id: str
    duration_s: float = 30.0
    t_ns: int = 0


def encode_spot_request(r: SpotCheckRequest) -> bytes:
    """Encode a ``spot_check`` payload."""
    return encode(
        "spot_check",
        {
            "client_id": r.client_id,
            "request_id": r.request_id,
            "duration_s": r.duration_s,
            "t_ns": r.t_ns,
        },
    )


def decode_spot_request(payload: bytes) -> SpotCheckRequest:
    """Decode a ``spot_check`` payload (duration 9-60 s, ids bounded)."""
    env = decode(payload)
    if env.kind != "spot_check":
        raise ProtocolError(f"expected a 'spot_check' payload, got {env.kind!r}")
    b = env.body
    return SpotCheckRequest(
        check_client_id(text_field(b, "client_id", 64)),
        name_field(b, "request_id"),
        number_field(b, "duration_s", MIN_SPOT_S, MAX_SPOT_S, default=30.0),
        int_field(b, "t_ns", 0, MAX_NS, default=0),
    )


@dataclass(frozen=True, slots=True)
class SpotCheckResult:
    """One spot check's verdict (``edge_agent.rhythm_verdict.RhythmVerdict`` on the wire)."""

    client_id: str
    request_id: str
    t_start_ns: int
    t_end_ns: int
    label: str
    probabilities: dict[str, float]
    quality: tuple[str, ...]
    decided: bool
    heart_rate_bpm: float | None = None
    model_version: str = ""


def encode_spot_result(r: SpotCheckResult) -> bytes:
    """Encode a ``spot_result`` payload."""
    body = {
        "client_id": r.client_id,
        "request_id": r.request_id,
        "t_start_ns": r.t_start_ns,
        "t_end_ns": r.t_end_ns,
        "label": r.label,
        "probabilities": r.probabilities,
        "quality": list(r.quality),
        "decided": r.decided,
        "heart_rate_bpm": r.heart_rate_bpm,
        "model_version": r.model_version,
    }
    return encode("spot_result", body)


def decode_spot_result(payload: bytes) -> SpotCheckResult:
    """Decode a ``spot_result`` payload (probabilities in [0, 1], at most 16 classes)."""
    env = decode(payload)
    if env.kind != "spot_result":
        raise ProtocolError(f"expected a 'spot_result' payload, got {env.kind!r}")
    b = env.body
    start, end = int_field(b, "t_start_ns", 0, MAX_NS), int_field(b, "t_end_ns", 0, MAX_NS)
    if end < start:
        raise ProtocolError("spot check ends before it starts")
    probs = b.get("probabilities")
    if not isinstance(probs, dict) or len(probs) > MAX_CLASSES:
        raise ProtocolError(f"field 'probabilities' is not an object of <= {MAX_CLASSES} classes")
    flags = list_field(b, "quality", MAX_FLAGS)
    return SpotCheckResult(
        check_client_id(text_field(b, "client_id", 64)),
        name_field(b, "request_id"),
        start,
        end,
        name_field(b, "label"),
        {check_text(k, "class name", 16): number_field(probs, k, 0.0, 1.0) for k in probs},
        tuple(name_field({"flag": f}, "flag") for f in flags),
        bool_field(b, "decided"),
        optional_number(b, "heart_rate_bpm", 0.0, MAX_HR_BPM),
        text_field(b, "model_version", 64, default=""),
    )
