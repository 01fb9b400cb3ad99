"""The intake's decoded updates, reused by their round's aggregation (pure)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cloud_aggregator.update_cache import DecodedUpdates, kept_update
from common import fl_protocol as fl


def _wire(cid: str, value: float = 0.01) -> tuple[bytes, fl.ClientUpdate]:
    delta = {"w": np.full((3, 4), value, np.float32), "b": np.zeros(3, np.float32)}
    payload = fl.encode_update(fl.ClientUpdate("7", cid, "v1", 50, delta, "none"))
    return payload, fl.decode_update(payload)


def test_the_aggregation_gets_the_kept_update_for_the_stored_digest_only() -> None:
    # Prepare
    cache = DecodedUpdates()
    payload, update = _wire("c1")
    other, _ = _wire("c1", value=0.02)  # the same update id, other bytes
    cache.put(7, payload, update, {})
    sha = hashlib.sha256(payload).hexdigest()
    # Execute
    kept = cache.take(7)
    # Assert: the store's digest of the same bytes -> the kept update; another digest -> none
    assert kept_update(kept, update.update_id, sha) == (sha, update, {})
    assert kept_update(kept, update.update_id, hashlib.sha256(other).hexdigest()) is None
    assert kept_update(kept, "7:c2", sha) is None  # not kept at all
    assert len(cache) == 0 and cache.take(7) == {}  # handed over once
    with pytest.raises(ValueError, match="read-only"):
        update.delta["w"][0, 0] = 1.0  # shared with the aggregation: not to be changed


def test_the_first_copy_of_an_update_id_is_kept() -> None:
    # Prepare
    cache = DecodedUpdates()
    first, u1 = _wire("c1")
    second, u2 = _wire("c1", value=0.02)
    # Execute
    cache.put(7, first, u1, {"loss": 1.0})
    cache.put(7, second, u2, {"loss": 2.0})
    # Assert: as the store, which keeps the first and refuses the second
    found = kept_update(cache.take(7), u1.update_id, hashlib.sha256(first).hexdigest())
    assert found is not None and found.update is u1 and found.metrics == {"loss": 1.0}


def test_a_new_round_drops_the_old_one_and_the_bound_is_kept() -> None:
    # Prepare: room for one update only
    payload, update = _wire("c1")
    size = sum(a.nbytes for a in update.delta.values())
    cache = DecodedUpdates(max_bytes=size)
    # Execute
    cache.put(7, payload, update, {})
    cache.put(7, *_wire("c2"), {})  # over the bound: not kept
    # Assert
    assert len(cache) == 1
    cache.put(8, *_wire("c3"), {})  # the next round: round 7's are dropped
    assert cache.take(7) == {} and len(cache) == 1
    assert [k.update.client_id for k in cache.take(8).values()] == ["c3"]
