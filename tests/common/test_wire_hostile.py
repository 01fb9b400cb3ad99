"""Hostile payloads on every inbound topic: each decoder raises ProtocolError and nothing else,
and whatever it returns is bounded (64-bit integers, finite floats, printable short strings)."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import fl_protocol as fl
from common.payloads import (
    Label,
    LabelAck,
    Status,
    decode_chunk,
    decode_label,
    decode_label_ack,
    decode_predictions,
    decode_status,
    encode_label,
    encode_label_ack,
    encode_predictions,
    encode_status,
)
from common.protocol import ProtocolError, decode
from common.types import BeatPrediction, Event

INT64_MAX = 2**63 - 1


def envelope(kind: str, body_json: str, blob: bytes = b"") -> bytes:
    """An envelope whose header JSON is given verbatim (so it may hold what ``encode`` refuses)."""
    extra = ""
    if blob:
        extra = f',"blob_size":{len(blob)},"blob_sha256":"{hashlib.sha256(blob).hexdigest()}"'
    raw = f'{{"kind":"{kind}","body":{body_json}{extra}}}'.encode()
    return struct.pack("<2sBI", b"MC", 1, len(raw)) + raw + blob


def update_body(**over: str) -> str:
    """JSON body of a valid tiny update, with fields replaced by raw JSON text."""
    fields = {
        "round_id": '"7"',
        "client_id": '"dev-1"',
        "update_id": json.dumps(fl.update_id_for("7", "dev-1")),
        "base_version": '"v1"',
        "n_examples": "10",
        "compression": '"none"',
        "compression_error": "0.0",
        "metrics": '{"loss":0.5}',
        "tensors": '[{"name":"w","shape":[2],"dtype":"float32","offset":0,"nbytes":8}]',
    }
    fields.update(over)
    rid, cid = json.loads(fields["round_id"]), json.loads(fields["client_id"])
    if "update_id" not in over and isinstance(rid, str) and isinstance(cid, str):
        fields["update_id"] = json.dumps(fl.update_id_for(rid, cid))
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


W = np.zeros(2, "<f4").tobytes()
HUGE = "9" * 5000


# The six payloads that crash-looped the aggregator, and their kin on every other topic.
HOSTILE: list[tuple[str, Callable[[bytes], Any], bytes]] = [
    ("round_id 20 digits", fl.decode_update,
     envelope("update", update_body(round_id='"99999999999999999999"'), W)),
    ("metric of 400 digits", fl.decode_update,
     envelope("update", update_body(metrics='{"loss":' + "9" * 400 + "}"), W)),
    ("header integer of 5000 digits", fl.decode_update,
     envelope("update", update_body(n_examples=HUGE), W)),
    ("metric Infinity", fl.decode_update,
     envelope("update", update_body(metrics='{"loss":Infinity}'), W)),
    ("metric NaN", fl.decode_update, envelope("update", update_body(metrics='{"loss":NaN}'), W)),
    ("metric 1e999", fl.decode_update, envelope("update", update_body(metrics='{"loss":1e999}'), W)),
    ("metric as string", fl.decode_update,
     envelope("update", update_body(metrics='{"loss":"x"}'), W)),
    ("n_examples negative", fl.decode_update, envelope("update", update_body(n_examples="-1"), W)),
    ("status NUL in a field", decode_status, envelope(
        "status", '{"client_id":"dev-1","online":true,"t_ns":1,"model_version":"v\\u00001"}')),
    ("status huge number", decode_status,
     envelope("status", '{"client_id":"dev-1","online":true,"t_ns":' + "9" * 30 + "}")),
    ("status battery Infinity", decode_status,
     envelope("status", '{"client_id":"dev-1","online":true,"t_ns":1,"battery_pct":Infinity}')),
    ("status detail 10k chars", decode_status, envelope(
        "status", '{"client_id":"dev-1","online":true,"t_ns":1,"detail":"' + "x" * 10_000 + '"}')),
    ("status bad client id", decode_status,
     envelope("status", '{"client_id":"a/b#","online":true,"t_ns":1}')),
    ("label t_ns 2**70", decode_label, envelope(
        "label", '{"label_id":"l1","client_id":"dev-1","t_ns":' + str(2**70)
        + ',"label":"V","target":"beat"}')),
    ("label t_ns 5000 digits", decode_label, envelope(
        "label", '{"label_id":"l1","client_id":"dev-1","t_ns":' + HUGE
        + ',"label":"V","target":"beat"}')),
    ("label NUL", decode_label, envelope(
        "label", '{"label_id":"l\\u0000","client_id":"dev-1","t_ns":1,"label":"V","target":"beat"}')),
    ("labelack t_ns huge", decode_label_ack,
     envelope("label_ack", '{"client_id":"dev-1","label_ids":["a"],"t_ns":' + "9" * 25 + "}")),
    ("pred beat t_ns huge", decode_predictions, envelope(
        "pred", '{"client_id":"dev-1","beats":[{"t_ns":' + "9" * 25 + ',"sample":1,"label":"N",'
        '"probs":{"N":1.0},"model_version":"v1","rr_s":0.8}],"events":[]}')),
    ("pred prob Infinity", decode_predictions, envelope(
        "pred", '{"client_id":"dev-1","beats":[{"t_ns":1,"sample":1,"label":"N",'
        '"probs":{"N":Infinity},"model_version":"v1","rr_s":0.8}],"events":[]}')),
    ("pred event details NUL", decode_predictions, envelope(
        "pred", '{"client_id":"dev-1","beats":[],"events":[{"event_id":"e","kind":"vt_run",'
        '"t_start_ns":1,"t_end_ns":2,"details":{"x":"\\u0000"}}]}')),
    ("pred event details deep", decode_predictions, envelope(
        "pred", '{"client_id":"dev-1","beats":[],"events":[{"event_id":"e","kind":"vt_run",'
        '"t_start_ns":1,"t_end_ns":2,"details":{"x":' + "[" * 50 + "]" * 50 + "}}]}")),
    ("pred too many beats", decode_predictions, envelope(
        "pred", '{"client_id":"dev-1","events":[],"beats":['
        + ",".join(['{"t_ns":1,"sample":1,"label":"N","probs":{},"model_version":"v"}'] * 2001)
        + "]}")),
    ("json nested 100k deep", decode_status, envelope("status", "[" * 30_000 + "]" * 30_000)),
    ("live t0 huge", lambda p: decode_chunk(p, "live"), envelope(
        "live", '{"client_id":"dev-1","stream":"ecg","fs":250,"t0_ns":' + "9" * 30
        + ',"seq":0,"shape":[2,1]}', W)),
    ("round id 20 digits", fl.decode_round, envelope(
        "round", '{"round_id":"99999999999999999999","run_id":"g1","round_no":1,'
        '"total_rounds":2,"attempt":0,"model_version":"v1","model_sha256":"' + "a" * 64
        + '","deadline_ns":1,"issued_ns":1,"config":{}}')),
    ("round deadline huge", fl.decode_round, envelope(
        "round", '{"round_id":"5","run_id":"g1","round_no":1,"total_rounds":2,"attempt":0,'
        '"model_version":"v1","model_sha256":"' + "a" * 64 + '","deadline_ns":' + "9" * 40
        + ',"issued_ns":1,"config":{}}')),
    ("model round_no huge", fl.decode_model, envelope(
        "model", '{"version":"v1","round_no":' + "9" * 30 + ',"tensors":[],"files":[]}')),
    ("model metric NaN", fl.decode_model, envelope(
        "model", '{"version":"v1","round_no":1,"tensors":[],"files":[],"metrics":{"f1":NaN}}')),
    ("chunk seq huge", lambda p: fl.parse_chunk(p), envelope(
        "chunk", '{"message_id":"m","seq":' + "9" * 30 + ',"total":2,"size":4,"sha256":"'
        + "a" * 64 + '"}', b"ab")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "decoder", "payload"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_payload_is_a_protocol_error(
    name: str, decoder: Callable[[bytes], Any], payload: bytes
) -> None:
    # Execute / Assert
    with pytest.raises(ProtocolError):
        decoder(payload)


def test_the_valid_twins_of_the_hostile_payloads_decode() -> None:
    # Prepare: the same builders with sane values (so the hostile cases fail for their field)
    upd = envelope("update", update_body(), W)
    status = envelope("status", '{"client_id":"dev-1","online":true,"t_ns":1}')
    # Execute
    u = fl.decode_update(upd)
    s = decode_status(status)
    # Assert
    assert (u.round_id, u.n_examples, u.metrics) == ("7", 10, {"loss": 0.5})
    assert (s.client_id, s.online, s.t_ns) == ("dev-1", True, 1)


def _bounded(value: object) -> None:
    """Assert a decoded value holds only 64-bit ints, finite floats and printable strings."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        assert -INT64_MAX <= value <= INT64_MAX
    elif isinstance(value, float):
        assert math.isfinite(value) or math.isnan(value)  # NaN only as 'no RR interval'
    elif isinstance(value, str):
        assert "\x00" not in value and len(value) <= 1000
    elif isinstance(value, dict):
        for k, v in value.items():
            _bounded(k)
            _bounded(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _bounded(v)
    elif hasattr(value, "__slots__") or hasattr(value, "__dict__"):
        names = getattr(value, "__slots__", None) or vars(value)
        for n in names:
            v = getattr(value, n)
            if not isinstance(v, np.ndarray) and not isinstance(v, bytes):
                _bounded(v)


JSON_LEAF = (
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["Infinity", "NaN", "\x00", "v1", "dev-1", "N", "7"])
)  # fmt: skip
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=20,
)
KINDS = {
    "update": fl.decode_update,
    "status": decode_status,
    "label": decode_label,
    "label_ack": decode_label_ack,
    "pred": decode_predictions,
    "round": fl.decode_round,
    "model": fl.decode_model,
}


def _valid_bodies() -> dict[str, dict[str, Any]]:
    beat = BeatPrediction("dev-1", 1, 2, "N", {"N": 0.9}, "v1", 0.8)
    ev = Event("e1", "dev-1", "vt_run", 1, 2, {"beats": 3})
    payloads = {
        "status": encode_status(Status("dev-1", True, 5, "v1", 50.0, "ok")),
        "label": encode_label(Label("l1", "dev-1", 5, "V")),
        "label_ack": encode_label_ack(LabelAck("dev-1", ("l1",), 5)),
        "pred": encode_predictions("dev-1", [beat], [ev]),
    }
    return {k: decode(v).body for k, v in payloads.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(KINDS)),
    mutations=st.dictionaries(st.text(max_size=15), JSON_VALUE, max_size=4),
    drop=st.lists(st.text(max_size=15), max_size=2),
    data=st.data(),
)
def test_fuzzed_bodies_raise_only_protocol_error_and_decode_bounded(
    kind: str, mutations: dict[str, Any], drop: list[str], data: st.DataObject
) -> None:
    # Prepare: a valid body (where we have one) with fields replaced, added or dropped
    body: dict[str, Any] = dict(_valid_bodies().get(kind, {}))
    for key in list(body):
        if data.draw(st.booleans()):
            body[key] = data.draw(JSON_VALUE)
    body.update(mutations)
    for key in drop:
        body.pop(key, None)
    raw = json.dumps(body, allow_nan=True)  # NaN/Infinity literals are on the menu
    payload = envelope(kind, raw)
    # Execute
    try:
        decoded = KINDS[kind](payload)
    except ProtocolError:
        return
    # Assert: what a decoder lets through is bounded
    _bounded(decoded)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(payload: bytes) -> None:
    for decoder in (*KINDS.values(), lambda p: decode_chunk(p, "live"), fl.parse_chunk):
        try:
            decoder(payload)
        except ProtocolError:
            pass
