"""The operator's training config: known keys, types and ranges (common.training_config)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.training_config import check_training_config


def test_a_valid_config_is_normalised() -> None:
    # Execute
    out = check_training_config(
        {"min_clients": 3.0, "deadline_s": 30, "mode": "full", "strategy_params": {"eta": 1}}
    )
    # Assert: whole floats become ints, numbers become floats where the field is a float
    assert out == {"min_clients": 3, "deadline_s": 30.0, "mode": "full",
                   "strategy_params": {"eta": 1.0}}  # fmt: skip
    assert isinstance(out["min_clients"], int)


@pytest.mark.parametrize(
    "config",
    [
        {"deadline_s": "soon"},
        {"min_clients": -3},
        {"min_clients": 1.5},
        {"fraction": float("nan")},
        {"lr": float("inf")},
        {"batch_size": True},
        {"compression": "zip"},
        {"strategy_params": {"Eta!": 1}},
        {"strategy_params": {f"p{i}": 1 for i in range(17)}},
        {"nonsense": 1},
    ],
)
def test_bad_configs_are_config_errors(config: dict) -> None:
    with pytest.raises(ConfigError):
        check_training_config(config)
