"""Aggregation of one round from stored update blobs (pure)."""

from __future__ import annotations

import numpy as np

from cloud_aggregator.privacy import DpPolicy
from cloud_aggregator.round_aggregation import StoredUpdate, aggregate_round
from cloud_aggregator.strategies import make_strategy
from common import fl_protocol as fl

W = {"w": np.zeros((2, 3), np.float32)}


def _stored(cid: str, value: float, n: int) -> StoredUpdate:
    u = fl.ClientUpdate("5", cid, "v1", n, {"w": np.full((2, 3), value, np.float32)}, "none")
    return StoredUpdate(cid, fl.encode_update(u), {"loss": 0.5, "bytes": 300, "note": "x"})


def test_fedavg_of_stored_updates_skips_unreadable_ones() -> None:
    # Prepare
    updates = [_stored("a", 1.0, 1), _stored("b", 4.0, 3), StoredUpdate("c", b"garbage", {})]
    # Execute
    result = aggregate_round(W, {}, updates, make_strategy("fedavg"))
    # Assert
    assert result is not None
    np.testing.assert_allclose(result.weights["w"], 3.25)
    assert result.metrics == {
        "weights_capped": 0.0,
        "norms_clipped": 0.0,
        "received": 2.0,
        "uplink_bytes_mean": 300.0,
    }
    assert result.client_metrics == {
        "a": {"loss": 0.5, "bytes": 300.0},
        "b": {"loss": 0.5, "bytes": 300.0},
    }


def test_nothing_readable_means_no_result() -> None:
    assert aggregate_round(W, {}, [StoredUpdate("c", b"", {})], make_strategy("fedavg")) is None


def test_dp_round_reports_clipping_and_epsilon() -> None:
    updates = [_stored(c, 1.0, 10) for c in "abcd"]
    result = aggregate_round(
        W,
        {},
        updates,
        make_strategy("fedavg"),
        dp=DpPolicy(0.1, 1.0),
        dp_q=0.5,
        rng=np.random.default_rng(0),
    )
    assert result is not None
    assert result.metrics["dp_clipped"] == 4 and result.metrics["dp_epsilon"] > 0
