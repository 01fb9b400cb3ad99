"""Updates decoded at intake, kept for their round's aggregation (pure).

Closing a round read its accepted updates back from the store and decoded every one again:
a third of the close of a round of 5,000 head updates, with the intake having decoded and
validated the same bytes moments before. :class:`DecodedUpdates` keeps the intake's decoded
update under its ``update_id`` with the SHA-256 of its wire bytes; the close uses it only where
the store's row has the same digest (the store stays the source of truth), and reads the
blobs back only when some stored update is not kept (another replica took it, the process
restarted, the cache was full).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from common import fl_protocol as fl

MAX_BYTES = 64 * 2**20  # float32 tensors kept (5,000 head updates: ~3.5 MB)


class KeptUpdate(NamedTuple):
    """An update as the intake decoded it and handed it to the store."""

    sha256: str  # hex digest of its wire bytes
    update: fl.ClientUpdate
    metrics: Mapping[str, float]  # what the store keeps with it


Kept = dict[str, KeptUpdate]  # by update id


class DecodedUpdates:
    """The open round's decoded updates by update id, bounded in memory (the engine's thread
    only: the intake puts, the close takes).

    Parameters
    ----------
    max_bytes : int
        Tensor bytes kept at most; updates beyond are not kept.
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._round: int | None = None
        self._kept: Kept = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    def put(
        self, round_id: int, payload: bytes, update: fl.ClientUpdate, metrics: Mapping[str, float]
    ) -> None:
        """Keep ``update`` (decoded from ``payload``, stored with ``metrics``) for
        ``round_id``; another round's are dropped (only the open round is aggregated next).
        Its tensors become read-only: the aggregation shares them and must not change them."""
        if round_id != self._round:
            self._round, self._kept, self._bytes = round_id, {}, 0
        size = sum(int(a.nbytes) for a in update.delta.values())
        if self._bytes + size > self.max_bytes or update.update_id in self._kept:
            return  # the first copy stays: the store keeps the first one too
        for arr in update.delta.values():
            arr.flags.writeable = False
        sha = hashlib.sha256(payload).hexdigest()
        self._kept[update.update_id] = KeptUpdate(sha, update, metrics)
        self._bytes += size

    def take(self, round_id: int) -> Kept:
        """Hand over (and forget) what is kept for ``round_id`` (empty for another round)."""
        if round_id != self._round:
            return {}
        kept = self._kept
        self._round, self._kept, self._bytes = None, {}, 0
        return kept


def kept_update(kept: Kept, update_id: str, sha256: str) -> KeptUpdate | None:
    """The kept update of ``update_id`` if its bytes had digest ``sha256`` (the store's)."""
    found = kept.get(update_id)
    return found if found is not None and found.sha256 == sha256 else None
