"""MedChain wire protocol: MQTT topics and the payload envelope.

Topics are built and parsed only here. Every payload is an *envelope*::

    b"MC" | version u8 | header_len u32 LE | header (UTF-8 JSON) | blob (optional bytes)

The JSON header holds ``kind`` (what the payload is), ``body`` (small structured data) and,
when a blob follows, its size and sha256. ``decode`` checks magic, version, lengths, the JSON and
the hash before anything is used, and raises :class:`ProtocolError` (never anything else) on
malformed input, so adapters can count and log rejects without crashing a stream.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from common.header_json import parse_header
from common.wire_fields import ProtocolError as ProtocolError  # re-exported: the wire error

PREFIX = "medchain/v1"
SCHEMA_VERSION = 1
MAGIC = b"MC"
_HEAD = struct.Struct("<2sBI")  # magic, version, header length
DEFAULT_MAX_PAYLOAD = 256 * 1024  # bytes; larger models/updates are chunked
MAX_HEADER = 64 * 1024  # bytes; a JSON header is small by design

# Client ids become topic levels and MQTT usernames: keep them to a safe alphabet.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Channel(StrEnum):
    """The second level of every topic: what flows on it."""

    ROUND = "round"
    MODEL = "model"
    UPDATE = "update"
    STATUS = "status"
    PRED = "pred"
    LIVE = "live"
    RAW = "raw"
    LABEL = "label"
    LABEL_ACK = "labelack"
    PRED_ACK = "predack"  # the store's receipt for a device's batch of predictions
    CONTROL = "control"  # server -> device requests (``spot_check``: common.spot_payloads)
    SPOT = "spot"  # device -> server: a spot check's verdict (``spot_result``)


def check_client_id(client_id: str) -> str:
    """Return ``client_id`` if it is safe as a topic level and MQTT username.

    Raises
    ------
    ProtocolError
        If it is empty, too long, or holds characters other than ``[A-Za-z0-9_.-]``.
    """
    if not _CLIENT_ID.match(client_id):
        raise ProtocolError(f"invalid client id {client_id[:80]!r}: use 1-64 of [A-Za-z0-9_.-]")
    return client_id


def round_current_topic() -> str:
    """Retained announcement of the current round."""
    return f"{PREFIX}/{Channel.ROUND}/current"


def model_topic(version: str) -> str:
    """Retained global model of one version (chunks use sub-levels, see ``chunk_topic``)."""
    return f"{PREFIX}/{Channel.MODEL}/{check_client_id(version)}"


def client_topic(channel: Channel, client_id: str) -> str:
    """Per-client topic: update, status, pred, live, raw or label."""
    if channel in (Channel.ROUND, Channel.MODEL):
        raise ProtocolError(f"{channel} is not a per-client channel")
    return f"{PREFIX}/{channel}/{check_client_id(client_id)}"


def _shared(flt: str, shared_group: str | None) -> str:
    """``flt`` as an MQTT 5 shared subscription of ``shared_group`` (unchanged if None/empty)."""
    return f"$share/{shared_group}/{flt}" if shared_group else flt


def subscription(channel: Channel, shared_group: str | None = None) -> str:
    """Wildcard filter for all clients of a channel, optionally as an MQTT 5 shared subscription."""
    return _shared(f"{PREFIX}/{channel}/#", shared_group)


CHUNK_LEVEL = "chunk"  # last topic level of the chunks of a split message


def client_subscription(channel: Channel, shared_group: str | None = None) -> str:
    """Filter for every client's own topic of a channel (``.../{client_id}``, no sub-levels)."""
    return _shared(f"{PREFIX}/{channel}/+", shared_group)


def chunk_subscription(channel: Channel) -> str:
    """Filter for the chunks of split messages of every client (``.../{client_id}/chunk``).

    Never shared between replicas: all chunks of one message must reach the same reassembler,
    so every replica gets every chunk and the store's idempotent insert keeps one copy.
    """
    return f"{PREFIX}/{channel}/+/{CHUNK_LEVEL}"


def chunk_topic(channel: Channel, client_id: str) -> str:
    """The topic the chunks of a client's split message are published on."""
    return f"{client_topic(channel, client_id)}/{CHUNK_LEVEL}"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: ``+`` one level, ``#`` the rest; ``$share/<group>/`` is stripped.

    >>> topic_matches("medchain/v1/update/+", "medchain/v1/update/dev-1")
    True
    >>> topic_matches("medchain/v1/model/#", "medchain/v1/model/v3/0")
    True
    """
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    want, got = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got) or (level != "+" and level != got[i]):
            return False
    return len(want) == len(got)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its channel and the id that follows it (client id, model version...)."""

    channel: Channel
    ident: str
    rest: tuple[str, ...] = ()


def parse_topic(topic: str) -> Topic:
    """Parse a MedChain topic.

    Raises
    ------
    ProtocolError
        If the topic is not under ``medchain/v1`` or names an unknown channel.
    """
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        raise ProtocolError(f"not a medchain/v1 topic: {topic!r}")
    try:
        channel = Channel(parts[2])
    except ValueError as exc:
        raise ProtocolError(f"unknown channel in topic {topic!r}") from exc
    ident = parts[3]
    if channel not in (Channel.ROUND,):
        check_client_id(ident)
    return Topic(channel, ident, tuple(parts[4:]))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded payload.

    Attributes
    ----------
    kind : str
        What the payload is (``round``, ``update``, ``pred``, ``live``, ``raw``...).
    body : dict
        Small structured data (JSON-compatible).
    blob : bytes
        Optional binary part (model, update tensors, raw samples); empty if none.
    """

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    blob: bytes = b""


def encode(kind: str, body: dict[str, Any], blob: bytes = b"") -> bytes:
    """Encode an envelope. ``body`` must be JSON-serialisable (no NaN: use None)."""
    header: dict[str, Any] = {"kind": kind, "body": body}
    if blob:
        header["blob_size"] = len(blob)
        header["blob_sha256"] = hashlib.sha256(blob).hexdigest()
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(raw) > MAX_HEADER:
        raise ProtocolError(f"envelope header is {len(raw)} bytes, limit {MAX_HEADER}")
    return _HEAD.pack(MAGIC, SCHEMA_VERSION, len(raw)) + raw + blob


def kind_of(payload: bytes) -> str | None:
    """The ``kind`` of an envelope from its header alone (blob not verified); None if malformed.

    For routing before a full :func:`decode` (which still checks everything).
    """
    if len(payload) < _HEAD.size:
        return None
    magic, version, hlen = _HEAD.unpack_from(payload)
    if magic != MAGIC or version != SCHEMA_VERSION or hlen > MAX_HEADER:
        return None
    try:
        header = parse_header(payload[_HEAD.size : _HEAD.size + hlen])
    except ProtocolError:
        return None
    kind = header.get("kind") if isinstance(header, dict) else None
    return kind if isinstance(kind, str) else None


_KIND_FIRST = b'{"kind":"'  # how every header from encode() starts (json.dumps keeps key order)


def peek_kind(payload: bytes) -> str | None:
    """The ``kind`` of an envelope whose header starts as :func:`encode` writes it, read
    without parsing the JSON; None for any other header (then :func:`kind_of` tells).

    A router peeks so that a message's header is parsed once, by its decoder. Where it answers,
    the answer is the ``kind`` a parse finds if the JSON is valid: the header starts with
    ``{"kind":"``, spells ``"kind"`` once and holds no backslash, so no escaped key can name
    ``kind`` a second time and the value holds no escape. The JSON itself is not checked.

    >>> peek_kind(encode("update", {"n_examples": 3}))
    'update'
    >>> peek_kind(encode("update", {"kind": "chunk"})) is None
    True
    """
    if len(payload) < _HEAD.size:
        return None
    magic, version, hlen = _HEAD.unpack_from(payload)
    start, end = _HEAD.size, _HEAD.size + hlen
    if magic != MAGIC or version != SCHEMA_VERSION or hlen > MAX_HEADER or end > len(payload):
        return None
    close = payload.find(b'"', start + len(_KIND_FIRST), end)
    if (
        close < 0
        or not payload.startswith(_KIND_FIRST, start, end)
        or payload.count(b'"kind"', start, end) != 1
        or payload.find(b"\\", start, end) >= 0
    ):
        return None
    try:
        return payload[start + len(_KIND_FIRST) : close].decode()
    except UnicodeDecodeError:
        return None


def decode(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> Envelope:
    """Decode and verify an envelope.

    Parameters
    ----------
    payload : bytes
        Untrusted bytes from the network.
    max_size : int
        Largest payload accepted, in bytes.

    Raises
    ------
    ProtocolError
        On any malformed input: size, magic, version, header length, JSON, blob size or hash.
    """
    if len(payload) > max_size:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds limit {max_size}")
    if len(payload) < _HEAD.size:
        raise ProtocolError(f"payload of {len(payload)} bytes is shorter than the envelope head")
    magic, version, hlen = _HEAD.unpack_from(payload)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != SCHEMA_VERSION:
        raise ProtocolError(
            f"unsupported schema version {version} (this build speaks {SCHEMA_VERSION})"
        )
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(payload):
        raise ProtocolError(f"header length {hlen} does not fit a {len(payload)}-byte payload")
    header = parse_header(payload[_HEAD.size : _HEAD.size + hlen])
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise ProtocolError("header lacks a 'kind' string")
    body = header.get("body", {})
    if not isinstance(body, dict):
        raise ProtocolError("header 'body' is not an object")
    blob = payload[_HEAD.size + hlen :]
    size = header.get("blob_size", 0)
    if size != len(blob):
        raise ProtocolError(f"blob is {len(blob)} bytes, header says {size!r}")
    if blob:
        digest = hashlib.sha256(blob).hexdigest()
        if digest != header.get("blob_sha256"):
            raise ProtocolError("blob sha256 mismatch")
    return Envelope(header["kind"], body, blob)
