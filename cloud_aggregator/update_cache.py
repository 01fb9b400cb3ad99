"""Updates decoded at intake, kept for their round's aggregation (pure).

Closing a round reads its accepted updates back from the store and decoded every one again:
a third of the close of a round of 5,000 head updates, with the intake having decoded and
validated the same bytes moments before. :class:`DecodedUpdates` keeps the intake's decoded
update under its exact wire bytes, so the aggregation uses it only for a stored blob equal to
what was decoded: the store stays the source of truth, and a blob not kept (another replica
took it, the process restarted, the cache was full) is decoded as before.
"""

from __future__ import annotations

from collections.abc import Callable

from common import fl_protocol as fl

MAX_BYTES = 64 * 2**20  # wire bytes + float32 tensors kept (5,000 head updates: ~7 MB)


class DecodedUpdates:
    """The open round's decoded updates by wire bytes, bounded in memory.

    Parameters
    ----------
    max_bytes : int
        Wire bytes plus tensor bytes kept at most; updates beyond are not kept.
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._round: int | None = None
        self._kept: dict[bytes, fl.ClientUpdate] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, round_id: int, payload: bytes, update: fl.ClientUpdate) -> None:
        """Keep ``update`` (decoded from ``payload``) for ``round_id``; another round's are
        dropped (only the open round is aggregated next). Its tensors become read-only: the
        aggregation shares them and must not change them."""
        if round_id != self._round:
            self._round, self._kept, self._bytes = round_id, {}, 0
        size = len(payload) + sum(int(a.nbytes) for a in update.delta.values())
        if self._bytes + size > self.max_bytes or payload in self._kept:
            return
        for arr in update.delta.values():
            arr.flags.writeable = False
        self._kept[bytes(payload)] = update
        self._bytes += size

    def take(self, round_id: int) -> dict[bytes, fl.ClientUpdate]:
        """Hand over (and forget) what is kept for ``round_id`` (empty for another round)."""
        if round_id != self._round:
            return {}
        kept = self._kept
        self._round, self._kept, self._bytes = None, {}, 0
        return kept


def decoder(kept: dict[bytes, fl.ClientUpdate]) -> Callable[[bytes], fl.ClientUpdate]:
    """``blob -> update``: the kept one for these exact bytes, else decoded (ProtocolError)."""

    def decode(blob: bytes) -> fl.ClientUpdate:
        found = kept.get(blob)
        return found if found is not None else fl.decode_update(blob)

    return decode
