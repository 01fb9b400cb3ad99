"""Chunking of large federated messages and their idempotent reassembly.

Messages larger than a configurable limit are split into ``chunk`` envelopes of
:mod:`common.protocol` (:func:`split_message`) that :class:`Reassembler` puts back together,
out of order and exactly once, verifying size and sha256 of the whole.

Every decoder takes untrusted bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from common.fl_tensors import MAX_MESSAGE
from common.protocol import ProtocolError, decode, encode
from common.wire_fields import int_field, text_field


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


# Message ids end up in database keys and log lines: a plain, short charset only.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """The envelope fields of one chunk: the message it belongs to and how to check the whole.

    ``size`` is the whole message's size in bytes, ``sha256`` its hex digest.
    """

    message_id: str
    seq: int
    total: int
    size: int
    sha256: str


def parse_chunk(
    payload: bytes, max_chunk: int = MAX_MESSAGE, max_size: int = MAX_MESSAGE
) -> tuple[ChunkHeader, bytes] | None:
    """Decode one received payload as a chunk: ``(header, blob)``, or ``None`` if it is whole.

    ``max_chunk`` bounds the chunk's blob and ``max_size`` the whole message, in bytes.
    Raises ProtocolError for a malformed envelope or fields out of range.
    """
    env = decode(payload, max_chunk + 65536 + 16)
    if env.kind != "chunk":
        return None
    b = env.body
    size = int_field(b, "size", 1, max_size)
    total = int_field(b, "total", 1, min(100_000, size))  # every chunk holds a byte at least
    header = ChunkHeader(
        text_field(b, "message_id", 128, _MESSAGE_ID),
        int_field(b, "seq", 0, total - 1),
        total,
        size,
        text_field(b, "sha256", 64, _SHA256),
    )
    if not env.blob:
        raise ProtocolError(f"chunk {header.seq} of {header.message_id} is empty")
    return header, env.blob


def join_chunks(message_id: str, parts: list[bytes], size: int, sha256: str) -> bytes:
    """The whole message from its blobs in ``seq`` order, checked against ``size``/``sha256``.

    Raises ProtocolError when the result does not match (a forged or mixed-up chunk).
    """
    whole = b"".join(parts)
    if len(whole) != size or hashlib.sha256(whole).hexdigest() != sha256:
        raise ProtocolError(f"reassembled {message_id} fails its size/sha256 check")
    return whole


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

        ``now_s`` is a clock in s, the same one on every call (for the TTL); ``max_chunk`` bounds
        a chunk in bytes.
        Non-chunk payloads are returned unchanged. Raises ProtocolError for a malformed chunk.
        """
        self._expire(now_s)
        try:
            parsed = parse_chunk(payload, max_chunk, self.max_size)
        except ProtocolError:
            self.rejected += 1
            raise
        if parsed is None:
            return payload
        head, blob = parsed
        mid = head.message_id
        if mid in self._done:
            return None
        pend = self._pending.get(mid)
        if pend is None:
            while len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                self.expired += 1
            pend = self._pending[mid] = _Pending(head.total, head.size, head.sha256, now_s)
        elif (pend.total, pend.size, pend.sha256) != (head.total, head.size, head.sha256):
            self.rejected += 1
            raise ProtocolError(f"chunk of {mid} disagrees with earlier chunks")
        pend.parts.setdefault(head.seq, blob)
        if len(pend.parts) < head.total:
            return None
        del self._pending[mid]
        try:
            whole = join_chunks(
                mid, [pend.parts[i] for i in range(head.total)], head.size, head.sha256
            )
        except ProtocolError:
            self.rejected += 1
            raise
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
