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


def _delta(w: float, b: float = 0.0, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"w": np.full((3, 4), w, dtype), "b": np.full(3, b, dtype)}


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (_update(delta=_delta(np.inf)), Reject.NON_FINITE),
        (_update(delta=_delta(0.1, -np.inf)), Reject.NON_FINITE),
        (_update(delta=_delta(np.nan), n_examples=0), Reject.NON_FINITE),  # checked first
        (_update(delta=_delta(1e200, dtype=np.float64)), Reject.NORM),  # squares overflow
        (_update(delta=_delta(1e200, dtype=np.float64), n_examples=0), Reject.EXAMPLES),
        (_update(delta=_delta(3e38)), Reject.NORM),  # float32's largest: no overflow in float64
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's, as before
def test_validate_update_tells_non_finite_from_too_long(
    update: ClientUpdate, reason: Reject
) -> None:
    # The norm is one pass over the values: NaN/inf in it is told apart from an overflow
    assert validate_update(update, SHAPES, "v1", ValidationPolicy(norm_bound=10.0)) == reason


def test_l2_norm_matches_the_per_tensor_sum() -> None:
    # Prepare: seeded tensors of several dtypes and shapes
    rng = np.random.default_rng(3)
    tensors = {
        "a": rng.normal(0, 1, (7, 5)).astype(np.float32),
        "b": rng.normal(0, 1e3, 11),
        "c": rng.integers(-5, 5, (2, 2, 2)).astype(np.int8),
        "d": np.zeros((0, 4), np.float32),
    }
    expected = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in tensors.values()))
    # Execute / Assert
    assert l2_norm(tensors) == pytest.approx(expected, rel=1e-12)
    assert l2_norm({}) == 0.0
    assert np.isnan(l2_norm({"x": np.array([1.0, np.nan])}))


def test_reject_counter_counts_from_several_threads() -> None:
    # Prepare: the service's thread and its update writer count at the same time
    import threading

    c = RejectCounter()

    def count(reason: Reject) -> None:
        for _ in range(20_000):
            c.add(reason)

    threads = [threading.Thread(target=count, args=(r,)) for r in (Reject.NORM, Reject.LATE) * 2]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Assert: no count lost
    assert c.as_dict() == {"norm": 40_000, "late": 40_000} and c.total == 80_000


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
