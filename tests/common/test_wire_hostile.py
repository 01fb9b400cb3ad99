"""Hostile payloads on every inbound topic: each decoder raises ProtocolError and nothing else,
and whatever it returns is bounded (64-bit integers, finite floats, printable short strings)."""

from __future__ import annotations

import json
import math
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
    decode_status,
    encode_label,
    encode_label_ack,
    encode_status,
)
from common.pred_payloads import decode_predictions, encode_predictions
from common.protocol import ProtocolError, decode
from common.types import BeatPrediction, Event
from tests.support.hostile import HOSTILE, W, envelope, update_body

INT64_MAX = 2**63 - 1


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    row=st.sampled_from(["beats", "events"]),
    mutations=st.dictionaries(st.text(max_size=15), JSON_VALUE, max_size=3),
    data=st.data(),
)
def test_fuzzed_rows_are_kept_or_refused_never_raised(
    row: str, mutations: dict[str, Any], data: st.DataObject
) -> None:
    # Prepare: a valid two-row batch whose first row has fields replaced or added
    body = _valid_bodies()["pred"]
    body[row] = [dict(body[row][0]), dict(body[row][0])]
    for key in list(body[row][0]):
        if data.draw(st.booleans()):
            body[row][0][key] = data.draw(JSON_VALUE)
    body[row][0].update(mutations)
    payload = envelope("pred", json.dumps(body))
    # Execute: the store's decoding keeps the batch's good rows
    try:
        batch = decode_predictions(payload, keep_valid_rows=True)
    except ProtocolError:  # only a document the JSON reader refuses (a 20-digit integer...)
        with pytest.raises(ProtocolError):
            decode(payload)
        return
    # Assert: the untouched row is always kept; the fuzzed one is kept bounded or refused
    kept = batch.beats if row == "beats" else batch.events
    assert len(kept) + len(batch.refused) == 2 and len(kept) >= 1
    assert all(r.index == 0 and r.kind == row[:-1] for r in batch.refused)
    _bounded(batch)
