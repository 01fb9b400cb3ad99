"""Devices sharing one process apply each round's patch once (edge_agent.release_cache)."""

from __future__ import annotations

import hashlib

import pytest

from common import fl_protocol as fl
from common.protocol import ProtocolError
from edge_agent import release_cache
from edge_agent.release_cache import ReleaseCache
from tests.common.test_fl_patch import pair


def test_devices_in_one_process_share_a_rebuilt_release(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: 50 devices holding v1; count the patch applications
    base, new, wire = pair(seed=4)
    full = fl.encode_model(base)
    calls: list[str] = []
    real = release_cache.apply_patch
    monkeypatch.setattr(release_cache, "apply_patch",
                        lambda b, p: calls.append(p.version) or real(b, p))  # fmt: skip
    caches = [ReleaseCache() for _ in range(50)]
    for c in caches:
        c.feed(base.version, full, 0.0)
    # Execute
    keys = {c.feed_patch(wire) for c in caches}
    # Assert: one application; every device holds v2 under the sha256 of its exact bytes
    want = (new.version, hashlib.sha256(fl.encode_model(new)).hexdigest())
    assert calls == ["v2"] and keys == {want}
    assert all(c._held[want] is caches[0]._held[want] for c in caches)


def test_a_device_holding_another_base_gets_no_shared_result() -> None:
    # Prepare: one device holds v1, another a different v1 (other bytes, other sha256)
    base, _, wire = pair(seed=5)
    other, _, _ = pair(seed=6)
    good, odd = ReleaseCache(), ReleaseCache()
    good.feed(base.version, fl.encode_model(base), 0.0)
    odd.feed(other.version, fl.encode_model(other), 0.0)
    # Execute / Assert: the patch names the base's sha256, which the odd device does not hold
    assert good.feed_patch(wire) is not None
    assert odd.feed_patch(wire) is None
    with pytest.raises(ProtocolError):
        ReleaseCache().feed_patch(wire[:-5])
