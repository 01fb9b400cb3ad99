"""Chunks of split client updates, held in the database until the whole update is admitted.

The aggregator acknowledges an MQTT chunk only after it is stored here, so a crash between two
chunks of one update loses nothing: the next replica or the restarted process finds the earlier
chunks and completes the update when the rest arrives.
"""

from __future__ import annotations

import logging

from common.fl_chunks import ChunkHeader
from store.errors import QuotaExceededError
from store.sql_base import SqlStoreBase

_LOGGER = logging.getLogger(__name__)

# What a held chunk costs against its sender's quota beyond its blob (ids, hash, index
# entries): tiny chunks, 100,000 to a message and any number of messages, are not free rows.
CHUNK_ROW_BYTES = 1024


class ChunksMixin(SqlStoreBase):
    """``update_chunk`` rows: put (idempotent), read in order, drop, expire."""

    def put_update_chunk(
        self, *, sender: str, header: ChunkHeader, blob: bytes, quota_bytes: int | None = None
    ) -> int:
        with self._tx(write=True) as tx:
            if quota_bytes is not None:
                tx.execute(
                    "SELECT COALESCE(SUM(LENGTH(blob)), 0) + ? * COUNT(*) FROM update_chunk"
                    " WHERE sender = ? AND NOT (message_id = ? AND seq = ?)",
                    (CHUNK_ROW_BYTES, sender, header.message_id, header.seq),
                )
                row = tx.one()
                held = 0 if row is None else int(row[0])
                if held + len(blob) + CHUNK_ROW_BYTES > quota_bytes:
                    raise QuotaExceededError(
                        f"{sender} holds {held} bytes of incomplete updates; quota {quota_bytes}"
                    )
            tx.execute(
                "INSERT INTO update_chunk (message_id, seq, total, size_bytes, sha256, sender,"
                " blob, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (message_id, seq) DO NOTHING",
                (
                    header.message_id,
                    header.seq,
                    header.total,
                    header.size,
                    header.sha256,
                    sender,
                    blob,
                    self._clock(),
                ),
            )
            tx.execute(
                "SELECT COUNT(*) FROM update_chunk WHERE message_id = ?", (header.message_id,)
            )
            row = tx.one()
        return 0 if row is None else int(row[0])

    def update_chunk_blobs(self, message_id: str) -> list[bytes]:
        with self._tx(write=False) as tx:
            tx.execute(
                "SELECT blob FROM update_chunk WHERE message_id = ? ORDER BY seq", (message_id,)
            )
            return [bytes(b) for (b,) in tx.all()]

    def drop_update_chunks(self, message_id: str) -> int:
        with self._tx(write=True) as tx:
            tx.execute("DELETE FROM update_chunk WHERE message_id = ?", (message_id,))
            return max(tx.rowcount, 0)

    def expire_update_chunks(self, max_age_s: float) -> int:
        with self._tx(write=True) as tx:
            tx.execute(
                "DELETE FROM update_chunk WHERE received_at < ?", (self._clock() - max_age_s,)
            )
            n = max(tx.rowcount, 0)
        if n:
            _LOGGER.warning("expired %d chunks of updates that never completed", n)
        return n
