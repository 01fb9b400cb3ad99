"""Update validation and client-level DP (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_aggregator.aggregation import l2_norm
from cloud_aggregator.privacy import DpPolicy, epsilon_after, privatize
from cloud_aggregator.validation import Reject, RejectCounter, ValidationPolicy, validate_update
from common.fl_protocol import ClientUpdate

SHAPES = {"w": (3, 4), "b": (3,)}


def _update(**kw: object) -> ClientUpdate:
    delta = kw.pop("delta", {"w": np.full((3, 4), 0.1, np.float32), "b": np.zeros(3, np.float32)})
    base = {
        "round_id": "1",
        "client_id": "c",
        "base_version": "v1",
        "n_examples": 50,
        "delta": delta,
    }
    base.update(kw)
    return ClientUpdate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (_update(), None),
        (_update(base_version="v0"), Reject.BASE_VERSION),
        (_update(delta={"w": np.zeros((3, 4), np.float32)}), Reject.TENSORS),
        (
            _update(delta={"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}),
            Reject.SHAPE,
        ),
        (
            _update(delta={"w": np.full((3, 4), np.nan, np.float32), "b": np.zeros(3, np.float32)}),
            Reject.NON_FINITE,
        ),
        (
            _update(delta={"w": np.full((3, 4), 1e4, np.float32), "b": np.zeros(3, np.float32)}),
            Reject.NORM,
        ),
        (_update(n_examples=0), Reject.EXAMPLES),
        (_update(compression_error=0.5), Reject.COMPRESSION),
    ],
)
def test_validate_update(update: ClientUpdate, reason: Reject | None) -> None:
    assert validate_update(update, SHAPES, "v1", ValidationPolicy(norm_bound=10.0)) == reason


def test_reject_counter_counts_by_reason() -> None:
    c = RejectCounter()
    for r in (Reject.NORM, Reject.NORM, Reject.SCHEMA):
        c.add(r)
    assert c.total == 3 and c.as_dict() == {"norm": 2, "schema": 1}


def test_privatize_clips_and_adds_calibrated_noise() -> None:
    # Prepare: 200 identical large deltas; the DP mean's noise std is z*C/m per coordinate
    rng = np.random.default_rng(0)
    big = {"w": np.full(10_000, 1.0, np.float32)}
    deltas = [(big, 7)] * 200
    policy = DpPolicy(clip=1.0, noise_multiplier=2.0)
    # Execute
    mean, n_clipped = privatize(deltas, policy, rng)
    # Assert
    assert n_clipped == 200
    residual = mean["w"] - 1.0 / np.sqrt(10_000)
    assert np.std(residual) == pytest.approx(2.0 / 200, rel=0.05)


def test_privatize_without_noise_is_the_clipped_mean() -> None:
    mean, _ = privatize(
        [({"w": np.array([3.0, 4.0], np.float32)}, 1)],
        DpPolicy(clip=1.0, noise_multiplier=0.0),
        np.random.default_rng(0),
    )
    assert l2_norm(mean) == pytest.approx(1.0)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    e1 = epsilon_after([(0.1, 1.0)] * 10, 1e-5)
    e2 = epsilon_after([(0.1, 1.0)] * 40, 1e-5)
    e3 = epsilon_after([(0.1, 3.0)] * 40, 1e-5)
    assert 0 < e1 < e2 and e3 < e2
    assert epsilon_after([], 1e-5) == 0.0
    assert epsilon_after([(1.0, 0.0)], 1e-5) == float("inf")
