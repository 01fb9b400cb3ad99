"""Wire protocol: topics and the envelope codec (pure)."""

from __future__ import annotations

import doctest

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


def _raw_header(text: str, blob: bytes = b"") -> bytes:
    """An envelope around header text given verbatim (no hash: peeking never reads the blob)."""
    raw = text.encode()
    return p._HEAD.pack(p.MAGIC, p.SCHEMA_VERSION, len(raw)) + raw + blob


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (p.encode("update", {"n": 1}, b"x" * 10), "update"),
        (p.encode("chunk", {"seq": 0}, b"x" * 10), "chunk"),
        (_raw_header('{"kind":"chunk"'), "chunk"),  # invalid JSON: not checked (kind_of is)
        (_raw_header('{"kind": "chunk"}'), None),  # not encode's spacing
        (_raw_header('{"body":{},"kind":"chunk"}'), None),  # kind not first
        (_raw_header('{"kind":"update","\\u006bind":"chunk"}'), None),  # escaped second kind
        (_raw_header('{"kind":"update","kind":"chunk"}'), None),  # the parse keeps the last
        (_raw_header('{"kind":"chu\\u006ek"}'), None),  # escaped value
        (p.encode("update", {"kind": "x"}), None),
        (p.encode("update", {})[:-1], None),  # header longer than the payload
        (b"XX" + p.encode("update", {})[2:], None),
        (b"\x00garbage", None),
    ],
)
def test_peek_kind_reads_headers_as_encode_writes_them(payload: bytes, kind: str | None) -> None:
    # Execute / Assert
    assert p.peek_kind(payload) == kind


def test_peek_kind_refuses_a_kind_of_invalid_utf8() -> None:
    # Prepare
    raw = b'{"kind":"\xff"}'
    payload = p._HEAD.pack(p.MAGIC, p.SCHEMA_VERSION, len(raw)) + raw
    # Execute / Assert
    assert p.peek_kind(payload) is None


_BODY = st.dictionaries(
    st.sampled_from(["kind", "n", "name", "k\\ind", "seq"]),
    st.one_of(st.integers(), st.text(max_size=6), st.sampled_from(['"kind"', "kind", "\\"])),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.text(max_size=8), body=_BODY, cut=st.integers(min_value=0, max_value=200))
def test_peek_kind_agrees_with_kind_of(kind: str, body: dict[str, object], cut: int) -> None:
    # Prepare: encoded envelopes, some cut short
    payload = p.encode(kind, body, b"blob")
    payload = payload[:cut] if cut % 2 == 0 else payload
    # Execute
    peeked, parsed = p.peek_kind(payload), p.kind_of(payload)
    # Assert: a peek is the parse's answer whenever the header parses
    assert peeked is None or parsed is None or peeked == parsed
    if parsed is not None and b"\\" not in payload and payload.count(b'"kind"') == 1:
        assert peeked == parsed  # and it answers for every header written as encode writes


def test_doctests() -> None:
    assert doctest.testmod(p).failed == 0
