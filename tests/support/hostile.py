"""Hostile payloads for every inbound topic (the ones that crash-looped the aggregator at
1bc2645 and their kin): used by the decoder tests, the service tests and the fault run."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from common import fl_protocol as fl
from common.payloads import decode_chunk, decode_label, decode_label_ack, decode_status
from common.pred_payloads import decode_predictions


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
