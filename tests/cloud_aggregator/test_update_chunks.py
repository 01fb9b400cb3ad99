"""Durable reassembly of chunked updates through a real (SQLite) store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_aggregator.update_chunks import DurableReassembler, Whole
from common import fl_protocol as fl
from common.protocol import ProtocolError, encode
from store import Store, open_store
from store.sql_chunks import CHUNK_ROW_BYTES

PAYLOAD = encode("update", {"n": 1}, bytes(range(256)) * 3)  # any whole envelope


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'agg.db'}")
    yield s
    s.close()


def _feed_all(r: DurableReassembler, sender: str, parts: list[bytes]) -> list[Whole | None]:
    return [r.feed(sender, p, 4096) for p in parts]


def test_whole_payload_passes_through(store: Store) -> None:
    assert DurableReassembler(store, 1 << 20).feed("c1", PAYLOAD, 4096) == Whole(PAYLOAD, None)


def test_update_completes_after_a_restart_between_chunks(store: Store) -> None:
    # Prepare: the first process sees all chunks but the last, then dies (object dropped)
    parts = fl.split_message(PAYLOAD, "u1", 300)
    assert len(parts) >= 3
    first = _feed_all(DurableReassembler(store, 1 << 20), "c1", parts[:-1])
    assert first == [None] * (len(parts) - 1)
    # Execute: the restarted process gets the last chunk only
    second = DurableReassembler(store, 1 << 20)
    whole = second.feed("c1", parts[-1], 4096)
    # Assert
    assert whole == Whole(PAYLOAD, "c1/u1")
    second.done("c1/u1")
    assert store.update_chunk_blobs("c1/u1") == []
    assert second.feed("c1", parts[0], 4096) is None  # late redelivery after completion


def test_senders_cannot_complete_or_spoil_each_others_chunks(store: Store) -> None:
    # Prepare: two clients use the same message id; one also sends a forged middle chunk
    mine = fl.split_message(PAYLOAD, "m", 300)
    theirs = fl.split_message(encode("update", {}, b"x" * 700), "m", 300)
    r = DurableReassembler(store, 1 << 20)
    # Execute
    out_theirs = _feed_all(r, "c2", theirs[:2])
    out_mine = _feed_all(r, "c1", mine)
    # Assert
    assert out_theirs == [None, None] and out_mine[-1] == Whole(PAYLOAD, "c1/m")
    assert len(store.update_chunk_blobs("c2/m")) == 2


def test_bad_hash_is_rejected_and_its_chunks_dropped(store: Store) -> None:
    # Prepare: chunk 1 replaced by one of another message with the same header
    good = fl.split_message(PAYLOAD, "u1", 300)
    other = fl.split_message(PAYLOAD[::-1], "u1", 300)
    forged = other[1].replace(
        fl.parse_chunk(other[1])[0].sha256.encode(),  # type: ignore[index]
        fl.parse_chunk(good[1])[0].sha256.encode(),  # type: ignore[index]
    )
    r = DurableReassembler(store, 1 << 20)
    # Execute / Assert
    assert _feed_all(r, "c1", [good[0], forged]) == [None, None]
    with pytest.raises(ProtocolError, match="size/sha256"):
        _feed_all(r, "c1", good[2:])
    assert r.rejected == 1 and store.update_chunk_blobs("c1/u1") == []


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00garbage",
        fl.split_message(PAYLOAD, "bad id with spaces", 300)[0],
        fl.split_message(PAYLOAD, "x" * 129, 300)[0],
    ],
)
def test_malformed_chunks_raise_protocol_error_and_store_nothing(store: Store, bad: bytes) -> None:
    r = DurableReassembler(store, 1 << 20)
    with pytest.raises(ProtocolError):
        r.feed("c1", bad, 4096)
    assert r.rejected == 1


def test_incomplete_updates_expire(store: Store) -> None:
    # Prepare: a fake monotonic clock; the store's own clock is the wall clock
    now = [0.0]
    r = DurableReassembler(store, 1 << 20, ttl_s=0.0, clock=lambda: now[0])
    parts = fl.split_message(PAYLOAD, "u1", 300)
    r.feed("c1", parts[0], 4096)
    # Execute: the next chunk, of another message, triggers the expiry pass
    now[0] = 1.0
    r.feed("c1", fl.split_message(PAYLOAD, "u2", 300)[0], 4096)
    # Assert: u1's chunk, stored before the pass, is gone
    assert store.update_chunk_blobs("c1/u1") == [] and r.expired >= 1


@settings(
    max_examples=40, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.lists(st.integers(0, 5), min_size=6, max_size=14), size=st.integers(1, 1500))
def test_any_order_with_duplicates_yields_the_payload(
    tmp_path_factory: pytest.TempPathFactory, order: list[int], size: int
) -> None:
    payload = encode("update", {}, bytes((i * 7) % 251 for i in range(size)))
    parts = fl.split_message(payload, "u", 300)
    sequence = [parts[i % len(parts)] for i in order] + parts  # every chunk at least once
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('h') / 'a.db'}")
    try:
        r = DurableReassembler(s, 1 << 20)
        wholes = [w for w in _feed_all(r, "c1", sequence) if w is not None]
        # The first completion carries the payload (later ones repeat it until done())
        assert wholes and wholes[0].payload == payload
        assert all(w.payload == payload for w in wholes)
    finally:
        s.close()


def _chunk(message_id: str, seq: int, total: int, size: int, blob: bytes) -> bytes:
    body = {"message_id": message_id, "seq": seq, "total": total, "size": size, "sha256": "0" * 64}
    return encode("chunk", body, blob)


def test_tiny_or_empty_chunks_cannot_park_unbounded_rows(store: Store) -> None:
    # An empty chunk cost 0 bytes of the quota: one device could park any number of rows in the
    # table every replica shares (100,000 chunks a message, any number of messages)
    r = DurableReassembler(store, 1 << 20, quota_bytes=64 * 1024)
    with pytest.raises(ProtocolError, match="is empty"):
        r.feed("c1", _chunk("m0", 0, 100_000, 1 << 20, b""), 4096)
    with pytest.raises(ProtocolError, match="total"):
        r.feed("c1", _chunk("m0", 0, 5, 2, b"x"), 4096)  # more chunks than bytes
    held = 0
    for k in range(200):  # one-byte chunks: each row costs its overhead against the quota
        try:
            r.feed("c1", _chunk(f"m{k}", 0, 2, 2, b"x"), 4096)
            held += 1
        except Exception as exc:  # the quota's refusal
            assert "quota" in str(exc)
    assert held <= 64 * 1024 // CHUNK_ROW_BYTES
