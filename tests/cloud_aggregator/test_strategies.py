"""Aggregation helpers and strategies (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_aggregator import aggregation as agg
from cloud_aggregator.strategies import make_strategy
from common.errors import ConfigError
from common.fl_protocol import RoundConfig


def _w(v: float) -> dict[str, np.ndarray]:
    return {"a": np.full((2, 3), v, np.float32), "b": np.full(2, v, np.float32)}


def test_weighted_mean_weights_by_example_count() -> None:
    out = agg.weighted_mean([(_w(1.0), 1.0), (_w(4.0), 3.0)])
    np.testing.assert_allclose(out["a"], 3.25)


def test_median_and_trimmed_mean_ignore_one_outlier() -> None:
    # Prepare: four honest clients near 1, one attacker at 1e6
    results = [(_w(v), 1.0) for v in (0.9, 1.0, 1.0, 1.0, 1e6)]
    # Execute
    med = agg.coordinate_median(results)
    trim = agg.trimmed_mean(results, 0.2)
    # Assert
    np.testing.assert_allclose(med["a"], 1.0)
    np.testing.assert_allclose(trim["b"], 1.0, atol=1e-6)


def test_clip_by_norm_bounds_the_global_norm() -> None:
    t, clipped = agg.clip_by_norm(_w(10.0), 1.0)
    assert clipped and agg.l2_norm(t) == pytest.approx(1.0, rel=1e-5)
    t2, clipped2 = agg.clip_by_norm(_w(0.01), 1.0)
    assert not clipped2 and agg.l2_norm(t2) == pytest.approx(agg.l2_norm(_w(0.01)))


def test_empty_results_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        agg.weighted_mean([])


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "median", "trimmed_mean"])
def test_plain_strategies_move_the_weights_by_the_consensus_delta(name: str) -> None:
    # Prepare
    strategy = make_strategy(name)
    deltas = [(_w(0.5), 10)] * 5
    # Execute
    new, state = strategy.aggregate(_w(1.0), deltas, {})
    # Assert
    np.testing.assert_allclose(new["a"], 1.5, rtol=1e-6)
    assert state == {}


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_server_optimisers_step_toward_the_delta_and_keep_state(name: str) -> None:
    # Prepare
    strategy = make_strategy(name, eta=0.1)
    deltas = [(_w(0.5), 10), (_w(0.3), 10)]
    # Execute
    new1, state1 = strategy.aggregate(_w(0.0), deltas, {})
    new2, state2 = strategy.aggregate(new1, deltas, state1)
    # Assert: moves in the delta's direction, by O(eta) per step (Adam normalises)
    assert 0 < float(new1["a"][0, 0]) < float(new2["a"][0, 0]) <= 0.3
    assert set(state2) == {"m.a", "m.b", "v.a", "v.b"}


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_server_optimisers_average_batch_norm_statistics(name: str) -> None:
    # Prepare: devices whose batches have variance 0.05 pull the running variance toward it
    # (torch's momentum 0.1); the weight beside it gets a constant pseudo-gradient
    strategy = make_strategy(name, eta=0.1)
    weights = {"bn.running_var": np.ones(4, np.float32), "bn.weight": np.ones(4, np.float32)}
    state: dict[str, np.ndarray] = {}
    lowest = 1.0
    # Execute
    for _ in range(100):
        delta = {"bn.running_var": 0.1 * (0.05 - weights["bn.running_var"]),
                 "bn.weight": np.full(4, 0.02, np.float32)}  # fmt: skip
        weights, state = strategy.aggregate(weights, [(delta, 10)], state)
        lowest = min(lowest, float(weights["bn.running_var"].min()))
    # Assert: the statistic settles at 0.05 and never goes below it (Adam's unit-size steps
    # would overshoot below zero); the weight took the optimiser's steps; no moments kept
    assert lowest >= 0.05 - 1e-6 and float(weights["bn.running_var"][0]) == pytest.approx(
        0.05, abs=0.01
    )
    assert float(weights["bn.weight"][0]) > 5 and "m.bn.running_var" not in state


def test_fedavg_momentum_builds_up_along_agreeing_rounds_and_survives_a_restart() -> None:
    # Prepare: every round's devices moved "a" by 0.1
    strategy = make_strategy("fedavg", server_lr=0.5, momentum=0.5)
    weights, state = _w(0.0), {}
    steps = []
    # Execute: the state is what the store keeps with each release
    for _ in range(4):
        new, state = strategy.aggregate(weights, [(_w(0.1), 10)], dict(state))
        steps.append(round(float(new["a"][0, 0] - weights["a"][0, 0]), 6))
        weights = new
    # Assert: 0.5 * (0.1, 0.15, 0.175, 0.1875), towards 0.5 / (1 - 0.5) * 0.1
    assert steps == [0.05, 0.075, 0.0875, 0.09375]
    assert set(state) == {"fedavg.v.a", "fedavg.v.b"}


def test_fedavg_momentum_keeps_the_buffer_of_a_tensor_nobody_trained() -> None:
    strategy = make_strategy("fedavg", momentum=0.9)
    _, state = strategy.aggregate(_w(0.0), [(_w(1.0), 1)], {})
    head_only = ({"a": np.zeros((2, 3), np.float32)}, 1)
    new, state2 = strategy.aggregate(_w(0.0), [head_only], state)
    np.testing.assert_allclose(new["b"], 0.0)  # "b" not sent this round: not moved
    np.testing.assert_allclose(state2["fedavg.v.b"], state["fedavg.v.b"])


def test_fedavg_scales_the_weights_step_but_averages_batch_norm_statistics() -> None:
    weights = {"bn.running_var": np.ones(2, np.float32), "bn.weight": np.ones(2, np.float32)}
    delta = {
        "bn.running_var": np.full(2, -0.5, np.float32),
        "bn.weight": np.full(2, 0.1, np.float32),
    }
    new, state = make_strategy("fedavg", server_lr=3.0).aggregate(weights, [(delta, 1)], {})
    np.testing.assert_allclose(new["bn.running_var"], 0.5)  # scaled by 3 it would be -0.5
    np.testing.assert_allclose(new["bn.weight"], 1.3, rtol=1e-6)
    assert state == {}  # no momentum, nothing to keep


def test_fedprox_sets_mu_in_the_round_config() -> None:
    assert make_strategy("fedprox", mu=0.1).configure(RoundConfig()).mu == 0.1
    assert make_strategy("fedavg").configure(RoundConfig(mu=0.0)).mu == 0.0


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("nope", {}),
        ("fedprox", {"mu": 0.0}),
        ("fedavg", {"bogus": 1.0}),
        ("fedavg", {"server_lr": 0.0}),
        ("fedavg", {"momentum": 1.0}),
        ("trimmed_mean", {"beta": 0.6}),
    ],
)
def test_bad_strategy_configuration_is_a_config_error(name: str, params: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        make_strategy(name, **params)


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "median", "trimmed_mean", "fedadam"])
def test_a_key_is_aggregated_over_the_updates_that_carry_it(name: str) -> None:
    # Prepare: a whole-model round; one device (without torch) sent the head only
    w = {"conv": np.zeros(3, np.float32), "head.weight": np.zeros(2, np.float32)}
    full = ({"conv": np.ones(3, np.float32), "head.weight": np.ones(2, np.float32)}, 10)
    head_only = ({"head.weight": np.full(2, 3.0, np.float32)}, 10)
    # Execute
    new, _ = make_strategy(name).aggregate(w, [full, full, head_only], {})
    # Assert: conv moved by the full updates alone; the head by all three
    assert np.all(new["conv"] > 0)
    if name in ("fedavg", "fedprox"):
        np.testing.assert_allclose(new["conv"], 1.0)
        np.testing.assert_allclose(new["head.weight"], 5 / 3, rtol=1e-6)
