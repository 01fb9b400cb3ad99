"""Contract: chunks of split updates are held idempotently, read in order, dropped, expired."""

from __future__ import annotations

from common.fl_chunks import ChunkHeader
from store import Store
from tests.store.conftest import Backend, FakeClock

SHA = "ab" * 32


def _head(mid: str, seq: int, total: int = 3) -> ChunkHeader:
    return ChunkHeader(mid, seq, total, 30, SHA)


def test_chunks_are_counted_once_and_read_in_seq_order(store: Store) -> None:
    # Execute: out of order, one redelivered with different bytes (the first copy wins)
    counts = [
        store.put_update_chunk(sender="c1", header=_head("c1/m", 2), blob=b"two"),
        store.put_update_chunk(sender="c1", header=_head("c1/m", 0), blob=b"zero"),
        store.put_update_chunk(sender="c1", header=_head("c1/m", 2), blob=b"TWO"),
        store.put_update_chunk(sender="c1", header=_head("c1/m", 1), blob=b"one"),
    ]
    # Assert
    assert counts == [1, 2, 2, 3]
    assert store.update_chunk_blobs("c1/m") == [b"zero", b"one", b"two"]
    assert store.update_chunk_blobs("c1/other") == []


def test_drop_forgets_one_message_only(store: Store) -> None:
    # Prepare
    for mid in ("c1/a", "c2/a"):
        for seq in (0, 1):
            store.put_update_chunk(sender=mid[:2], header=_head(mid, seq), blob=b"x" * 10)
    # Execute
    dropped = store.drop_update_chunks("c1/a")
    # Assert
    assert dropped == 2 and store.drop_update_chunks("c1/a") == 0
    assert store.update_chunk_blobs("c1/a") == [] and len(store.update_chunk_blobs("c2/a")) == 2


def test_expiry_deletes_only_old_chunks(store: Store, clock: FakeClock) -> None:
    # Prepare: one chunk 700 s old, one 100 s old
    store.put_update_chunk(sender="c1", header=_head("c1/old", 0), blob=b"old")
    clock.advance(600)
    store.put_update_chunk(sender="c1", header=_head("c1/new", 0), blob=b"new")
    clock.advance(100)
    # Execute
    expired = store.expire_update_chunks(600.0)
    # Assert
    assert expired == 1
    assert store.update_chunk_blobs("c1/old") == [] and store.update_chunk_blobs("c1/new") == [
        b"new"
    ]


def test_chunk_blobs_survive_reopening(backend: Backend) -> None:
    # Execute: one process stores a chunk; another one (restart, replica) reads it
    backend.open().put_update_chunk(sender="c1", header=_head("c1/m", 1), blob=b"\x00\xff")
    # Assert
    assert backend.open().update_chunk_blobs("c1/m") == [b"\x00\xff"]
