"""A round's client config: class weights from the labels the run's devices reported."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_aggregator.closing import device_evaluation
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.round_config import balanced_weights, client_round_config, run_label_counts
from cloud_aggregator.strategies import make_strategy
from common import fl_protocol as fl
from store import DesiredTraining, TrainingControl


def _control(config: dict) -> TrainingControl:  # type: ignore[type-arg]
    return TrainingControl(desired=DesiredTraining.RUNNING, task="rhythm", strategy="fedavg",
                           dataset="", rounds=3, config=config, updated_by="t",
                           updated_at=0.0, generation=1)  # fmt: skip


def test_balanced_weights_are_count_to_the_minus_power_with_mean_one() -> None:
    # Execute
    w = np.array(balanced_weights([600, 100, 300, 0], 0.5))
    # Assert: rarer classes weigh more, the counted examples' mean weight is 1, an unseen
    # class gets the largest weight seen
    counts = np.array([600, 100, 300])
    assert w[1] > w[2] > w[0] and float(np.sum(w[:3] * counts) / counts.sum()) == pytest.approx(1)
    assert w[1] / w[0] == pytest.approx(np.sqrt(6), rel=1e-4) and w[3] == w[1]


def test_balanced_weights_stay_within_what_devices_accept() -> None:
    # A run where one class is a million times rarer: count^-1 made a weight devices refuse
    # (MAX_CLASS_WEIGHT), so every later announcement of the run was refused by every device
    w = balanced_weights([1e9, 1.0, 0.0], 1.0)
    assert max(w) == fl.MAX_CLASS_WEIGHT
    cfg = fl.RoundConfig(class_weights=w)
    assert fl.RoundConfig.from_dict(cfg.to_dict()).class_weights == w


def test_the_round_config_carries_weights_only_when_asked_and_known() -> None:
    # Prepare: two closed rounds' pooled device evaluations (one device per label)
    r1 = device_evaluation({"a": {"eval_n": 1, "eval_tp_0": 1}, "b": {"eval_n": 1, "eval_fn_1": 1}},
                           ("N", "AF"))  # fmt: skip
    r2 = device_evaluation({"c": {"eval_n": 2, "eval_fn_0": 2}}, ("N", "AF"))
    counts = run_label_counts([r1, r2], ("N", "AF"))
    s, fedavg = AggregatorSettings(), make_strategy("fedavg")
    # Execute
    on = client_round_config(_control({"class_balance": 1.0, "mode": "full"}), s, fedavg, counts)
    off = client_round_config(_control({"mode": "full"}), s, fedavg, counts)
    first = client_round_config(_control({"class_balance": 1.0}), s, fedavg, [0.0, 0.0])
    # Assert
    assert counts == [3.0, 1.0]
    assert on.class_weights == pytest.approx((2 / 3, 2.0))
    assert off.class_weights == () and first.class_weights == ()
