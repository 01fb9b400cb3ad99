"""Wire protocol: topics and the envelope codec (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import protocol as p


@pytest.mark.parametrize(
    ("topic", "channel", "ident"),
    [
        ("medchain/v1/update/patient-101", p.Channel.UPDATE, "patient-101"),
        ("medchain/v1/status/a.b_c", p.Channel.STATUS, "a.b_c"),
        ("medchain/v1/round/current", p.Channel.ROUND, "current"),
        ("medchain/v1/model/v12", p.Channel.MODEL, "v12"),
    ],
)
def test_parse_topic(topic: str, channel: p.Channel, ident: str) -> None:
    # Execute
    parsed = p.parse_topic(topic)
    # Assert
    assert (parsed.channel, parsed.ident) == (channel, ident)


@pytest.mark.parametrize(
    "topic",
    [
        "medchain/v2/update/x",
        "other/v1/update/x",
        "medchain/v1/nope/x",
        "medchain/v1/update/a b",
        "medchain/v1",
    ],
)
def test_parse_topic_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_topic(topic)


def test_client_topic_round_trips() -> None:
    topic = p.client_topic(p.Channel.PRED, "dev-7")
    assert topic == "medchain/v1/pred/dev-7"
    assert p.parse_topic(topic) == p.Topic(p.Channel.PRED, "dev-7")


def test_client_ids_that_break_topics_are_refused() -> None:
    for bad in ["", "a/b", "+", "#", "x" * 65]:
        with pytest.raises(p.ProtocolError):
            p.client_topic(p.Channel.UPDATE, bad)


def test_shared_subscription() -> None:
    assert p.subscription(p.Channel.UPDATE, "agg") == "$share/agg/medchain/v1/update/#"


def test_envelope_round_trip_with_blob() -> None:
    # Prepare
    blob = bytes(range(256)) * 3
    # Execute
    env = p.decode(p.encode("update", {"round": 3, "n": 120}, blob))
    # Assert
    assert env == p.Envelope("update", {"round": 3, "n": 120}, blob)


def test_envelope_detects_tampered_blob() -> None:
    raw = bytearray(p.encode("model", {"v": 1}, b"\x01\x02\x03"))
    raw[-1] ^= 0xFF
    with pytest.raises(p.ProtocolError, match="sha256"):
        p.decode(bytes(raw))


def test_envelope_size_limit() -> None:
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode(p.encode("x", {}, b"\0" * 1000), max_size=500)


@settings(max_examples=500, derandomize=True)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_protocol_error(data: bytes) -> None:
    try:
        p.decode(data)
    except p.ProtocolError:
        pass


@settings(max_examples=300, derandomize=True)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=400))
def test_decode_of_corrupted_valid_payload(blob: bytes, pos: int) -> None:
    raw = bytearray(p.encode("pred", {"k": "v"}, blob))
    raw[pos % len(raw)] ^= 0x5A
    try:
        p.decode(bytes(raw))
    except p.ProtocolError:
        pass


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (p.encode("chunk", {"seq": 0}, b"x" * 10), "chunk"),
        (p.encode("update", {}), "update"),
        (p.encode("update", {})[:5], None),
        (b"\x00garbage", None),
        (p.encode("update", {})[:7] + b"{not json" + b"\x00" * 40, None),
    ],
)
def test_kind_of_reads_the_header_only(payload: bytes, kind: str | None) -> None:
    assert p.kind_of(payload) == kind
