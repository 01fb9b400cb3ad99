"""Robust bounds of a round (weights, norms) and the release gate, on the poisoning attacks that
took over the global model: a device claiming 1,000,000 examples with a delta just under the
validation norm bound (bias V -7 / N +7, then the N and V rows swapped)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cloud_aggregator.release_gate import ReleaseGate
from cloud_aggregator.robust import RobustPolicy, bound_updates
from cloud_aggregator.round_aggregation import StoredUpdate, aggregate_round
from cloud_aggregator.strategies import make_strategy
from common import fl_protocol as fl

C, E = 5, 8  # AAMI classes N S V F Q, embedding size
N_, V_ = 0, 2


def honest(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"head.weight": rng.normal(0, 0.05, (C, E)).astype(np.float32),
            "head.bias": rng.normal(0, 0.05, C).astype(np.float32)}  # fmt: skip


def bias_attack() -> dict[str, np.ndarray]:
    bias = np.zeros(C, np.float32)
    bias[V_], bias[N_] = -7.0, 7.0  # norm 9.9: just under the validation bound of 10
    return {"head.weight": np.zeros((C, E), np.float32), "head.bias": bias}


def stored(cid: str, delta: dict[str, np.ndarray], n: int) -> StoredUpdate:
    u = fl.ClientUpdate("5", cid, "v1", n, delta, "none")
    return StoredUpdate(cid, fl.encode_update(u), {})


def test_inflated_claim_is_capped_and_outlying_norm_clipped() -> None:
    # Prepare: two honest devices of 300 beats, one liar
    deltas = [(honest(1), 300), (honest(2), 300), (bias_attack(), 1_000_000)]
    # Execute
    out = bound_updates(deltas, RobustPolicy(weight_cap=3.0, norm_mult=3.0), max_examples=20_000)
    # Assert: the liar weighs at most 3 typical devices and its delta is clipped to 3x median
    weights = [w for _, w in out.deltas]
    assert weights == [300, 300, 900]
    honest_norm = math.sqrt(sum(float(np.sum(v**2)) for v in honest(2).values()))
    liar_norm = math.sqrt(sum(float(np.sum(v**2)) for v in out.deltas[2][0].values()))
    assert liar_norm == pytest.approx(out.norm_bound, rel=1e-5)
    assert out.norm_bound < 4 * honest_norm
    assert (out.capped, out.clipped, out.suspects) == (1, 1, (2,))


def test_honest_cohort_is_left_untouched() -> None:
    deltas = [(honest(i), 250 + 10 * i) for i in range(6)]
    out = bound_updates(deltas, RobustPolicy(), max_examples=20_000)
    assert (out.capped, out.clipped, out.suspects) == (0, 0, ())
    for (a, wa), (b, wb) in zip(deltas, out.deltas, strict=True):
        assert wa == wb and all(np.array_equal(a[k], b[k]) for k in a)


def test_claim_above_the_rounds_max_examples_is_capped_even_alone() -> None:
    out = bound_updates([(honest(1), 50_000)], RobustPolicy(), max_examples=20_000)
    assert [w for _, w in out.deltas] == [20_000]


def test_bias_attack_no_longer_takes_over_fedavg() -> None:
    # Prepare
    w0 = {"head.weight": np.zeros((C, E), np.float32), "head.bias": np.zeros(C, np.float32)}
    ups = [stored("a", honest(1), 300), stored("b", honest(2), 300),
           stored("evil", bias_attack(), 1_000_000)]  # fmt: skip
    # Execute
    plain = aggregate_round(w0, {}, ups, make_strategy("fedavg"), robust=RobustPolicy(0, 0))
    robust = aggregate_round(w0, {}, ups, make_strategy("fedavg"), max_examples=20_000)
    # Assert: unbounded, the liar's V bias is the model's; bounded, it moves by a fraction
    assert plain is not None and robust is not None
    assert plain.weights["head.bias"][V_] < -6.9
    assert robust.weights["head.bias"][V_] > -0.5
    assert robust.suspects == ("evil",)
    assert robust.metrics["weights_capped"] == 1 and robust.metrics["norms_clipped"] == 1


def test_excluded_clients_are_left_out() -> None:
    w0 = {"head.weight": np.zeros((C, E), np.float32), "head.bias": np.zeros(C, np.float32)}
    ups = [stored("a", honest(1), 300), stored("evil", bias_attack(), 300)]
    out = aggregate_round(w0, {}, ups, make_strategy("fedavg"), exclude=frozenset({"evil"}))
    assert out is not None and set(out.client_metrics) == {"a"}
    np.testing.assert_allclose(out.weights["head.bias"], honest(1)["head.bias"], atol=1e-6)


CURRENT = {"macro_f1": 0.60, "se_N": 0.95, "se_S": 0.80, "se_V": 0.92, "se_F": float("nan")}


@pytest.mark.parametrize(
    ("candidate", "refused_for"),
    [
        ({"macro_f1": 0.61, "se_N": 0.95, "se_S": 0.80, "se_V": 0.93}, None),
        ({"macro_f1": 0.57, "se_N": 0.94, "se_S": 0.78, "se_V": 0.90}, None),  # within margins
        ({"macro_f1": 0.30, "se_N": 0.99, "se_S": 0.80, "se_V": 0.05}, "macro_f1"),
        ({"macro_f1": 0.58, "se_N": 0.95, "se_S": 0.60, "se_V": 0.92}, "se_S"),  # rare class
        ({"macro_f1": 0.60, "se_N": 0.95, "se_S": 0.80}, "se_V"),  # a class lost entirely
        ({"macro_f1": float("nan"), "se_N": 0.95, "se_S": 0.80, "se_V": 0.92}, "macro_f1"),
    ],
)
def test_release_gate(candidate: dict[str, float], refused_for: str | None) -> None:
    refusal = ReleaseGate(margin=0.05, class_margin=0.15).refusal(candidate, CURRENT)
    if refused_for is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.startswith(f"release gate: {refused_for} ")


def test_device_evaluation_pools_confusion_counts_over_devices() -> None:
    # Prepare: two devices; class 0 = N, 1 = S, 2 = V (F and Q absent)
    from cloud_aggregator.closing import device_evaluation

    a = {"eval_n": 10.0, "eval_tp_0": 8, "eval_fp_0": 1, "eval_fn_0": 0, "eval_tp_2": 1,
         "eval_fp_2": 0, "eval_fn_2": 1, "loss": 0.3}  # fmt: skip
    b = {"eval_n": 5.0, "eval_tp_0": 3, "eval_fp_0": 1, "eval_fn_0": 1, "eval_tp_1": 1,
         "eval_fp_1": 1, "eval_fn_1": 0}  # fmt: skip
    # Execute
    out = device_evaluation({"a": a, "b": b}, ("N", "S", "V", "F", "Q"))
    # Assert: pooled, not averaged per device
    assert out["device_n"] == 15
    assert out["device_se_N"] == pytest.approx(11 / 12) and out["device_ppv_N"] == 11 / 13
    assert out["device_se_V"] == 0.5 and out["device_ppv_S"] == 0.5
    f1 = [2 * 11 / (22 + 2 + 1), 2 * 1 / (2 + 1 + 0), 2 * 1 / (2 + 0 + 1)]
    assert out["device_macro_f1"] == pytest.approx(sum(f1) / 3)
    assert "device_se_F" not in out
    assert device_evaluation({"a": {"loss": 1.0}}, ("N",)) == {}
