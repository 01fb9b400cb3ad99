"""The intake's decoded updates, reused by their round's aggregation (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_aggregator.update_cache import DecodedUpdates, decoder
from common import fl_protocol as fl


def _wire(cid: str, value: float = 0.01) -> tuple[bytes, fl.ClientUpdate]:
    delta = {"w": np.full((3, 4), value, np.float32), "b": np.zeros(3, np.float32)}
    payload = fl.encode_update(fl.ClientUpdate("7", cid, "v1", 50, delta, "none"))
    return payload, fl.decode_update(payload)


def test_the_aggregation_gets_the_kept_update_for_the_same_bytes_only() -> None:
    # Prepare
    cache = DecodedUpdates()
    payload, update = _wire("c1")
    other, _ = _wire("c2")
    cache.put(7, payload, update)
    # Execute
    decode = decoder(cache.take(7))
    # Assert: equal bytes (another object, as the store returns them) -> the kept update
    assert decode(bytes(bytearray(payload))) is update
    assert decode(other).client_id == "c2"  # not kept: decoded
    assert len(cache) == 0 and cache.take(7) == {}  # handed over once
    with pytest.raises(ValueError, match="read-only"):
        update.delta["w"][0, 0] = 1.0  # shared with the aggregation: not to be changed


def test_a_new_round_drops_the_old_one_and_the_bound_is_kept() -> None:
    # Prepare: room for one update only
    payload, update = _wire("c1")
    size = len(payload) + sum(a.nbytes for a in update.delta.values())
    cache = DecodedUpdates(max_bytes=size)
    # Execute
    cache.put(7, payload, update)
    cache.put(7, *_wire("c2"))  # over the bound: not kept
    # Assert
    assert len(cache) == 1
    cache.put(8, *_wire("c3"))  # the next round: round 7's are dropped
    assert cache.take(7) == {} and len(cache) == 1
    assert [u.client_id for u in cache.take(8).values()] == ["c3"]
