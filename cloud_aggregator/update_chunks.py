"""Durable reassembly of split client updates: every chunk is in the store before it is acked.

The in-memory :class:`common.fl_chunks.Reassembler` (fine on a device, where a lost partial
model is simply fetched again from the retained topic) would lose the acknowledged chunks of an
update if the aggregator died between two of them; the client has no reason to send them again.
Here each chunk is written to the store first, the message is acknowledged afterwards, and the
update is rebuilt from the store when its last chunk arrives, by whichever process holds the
subscription then (a restarted aggregator or another replica on the same database).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

from common import fl_protocol as fl
from common.protocol import ProtocolError
from store.errors import QuotaExceededError

_LOGGER = logging.getLogger(__name__)


class ChunkStore(Protocol):
    """The part of :class:`store.Store` that holds chunks."""

    def put_update_chunk(
        self, *, sender: str, header: fl.ChunkHeader, blob: bytes, quota_bytes: int | None = None
    ) -> int: ...

    def update_chunk_blobs(self, message_id: str) -> list[bytes]: ...

    def drop_update_chunks(self, message_id: str) -> int: ...

    def expire_update_chunks(self, max_age_s: float) -> int: ...


class Whole(NamedTuple):
    """A complete update: its bytes and, if it came in chunks, the key to pass to ``done``."""

    payload: bytes
    key: str | None


class DurableReassembler:
    """Reassemble chunked updates through a :class:`ChunkStore`.

    Parameters
    ----------
    store : ChunkStore
        Where chunks wait; shared by replicas and restarts.
    max_size : int
        Largest whole update accepted, bytes.
    quota_bytes : int, optional
        Most chunk bytes one sender may hold in the store (its incomplete updates); a chunk
        beyond it is refused. Default ``2 * max_size``.
    ttl_s : float
        Chunks of an update still incomplete after this many seconds are dropped (checked at
        most every ``ttl_s / 10`` s, when chunks arrive).
    clock : callable, optional
        Monotonic seconds for the expiry schedule (``time.monotonic``).

    Attributes
    ----------
    rejected : int
        Chunks refused (malformed, out of range) and reassembled updates failing their check.
    expired : int
        Chunks dropped by the TTL.
    """

    def __init__(
        self,
        store: ChunkStore,
        max_size: int,
        ttl_s: float = 600.0,
        quota_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self._next_expiry = clock()
        self.max_size = max_size
        self.quota_bytes = 2 * max_size if quota_bytes is None else quota_bytes
        self.ttl_s = ttl_s
        self.rejected = 0
        self.expired = 0
        # Messages this process completed: a late QoS 1 redelivery of one of their chunks is
        # ignored instead of starting a partial copy that could only expire.
        self._done: OrderedDict[str, None] = OrderedDict()

    def feed(self, sender: str, payload: bytes, max_chunk: int) -> Whole | None:
        """Take one payload received from ``sender``; return the whole update or ``None``.

        A payload that is not a chunk comes back unchanged (``key`` None). Chunks are keyed by
        sender and message id, so one client's chunks can never complete or spoil another's.
        The whole update is returned each time its last missing chunk is fed until
        :meth:`done` is called with its key, so a crash before the update is stored only
        repeats the work. ``max_chunk`` bounds a chunk's blob in bytes. Raises ProtocolError
        for a malformed chunk or a reassembly failing its size/sha256 check (its chunks are
        then dropped).
        """
        try:
            parsed = fl.parse_chunk(payload, max_chunk, self.max_size)
        except ProtocolError:
            self.rejected += 1
            raise
        if parsed is None:
            return Whole(payload, None)
        if self.clock() >= self._next_expiry:
            self._next_expiry = self.clock() + self.ttl_s / 10
            self.expire()
        head, blob = parsed
        head = dataclasses.replace(head, message_id=f"{sender}/{head.message_id}")
        if head.message_id in self._done:
            return None
        try:
            held = self.store.put_update_chunk(
                sender=sender, header=head, blob=blob, quota_bytes=self.quota_bytes
            )
        except QuotaExceededError as exc:
            self.rejected += 1
            raise ProtocolError(f"chunk refused: {exc}") from exc
        if held < head.total:
            return None
        parts = self.store.update_chunk_blobs(head.message_id)
        try:
            if len(parts) != head.total:
                raise ProtocolError(
                    f"{head.message_id}: {len(parts)} chunks held for a total of {head.total}"
                )
            whole = fl.join_chunks(head.message_id, parts, head.size, head.sha256)
        except ProtocolError:
            self.rejected += 1
            self.done(head.message_id)
            raise
        return Whole(whole, head.message_id)

    def done(self, key: str) -> None:
        """The update of ``key`` (from :class:`Whole`) is stored or refused: drop its chunks."""
        self.store.drop_update_chunks(key)
        self._done[key] = None
        while len(self._done) > 4096:
            self._done.popitem(last=False)

    def expire(self) -> int:
        """Drop chunks older than the TTL; returns how many."""
        n = self.store.expire_update_chunks(self.ttl_s)
        self.expired += n
        return n
