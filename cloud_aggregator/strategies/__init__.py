"""Aggregation strategies, one module each, and a factory by name."""

from __future__ import annotations

from typing import Any

from cloud_aggregator.strategies.base import Delta, Strategy
from cloud_aggregator.strategies.fedadam import FedAdam
from cloud_aggregator.strategies.fedavg import FedAvg
from cloud_aggregator.strategies.fedprox import FedProx
from cloud_aggregator.strategies.fedyogi import FedYogi
from cloud_aggregator.strategies.median import FedMedian
from cloud_aggregator.strategies.trimmed_mean import FedTrimmedAvg
from common.errors import ConfigError

STRATEGIES: dict[str, type[Any]] = {
    "fedavg": FedAvg,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "median": FedMedian,
    "trimmed_mean": FedTrimmedAvg,
}


def make_strategy(name: str, **params: float) -> Strategy:
    """Build a strategy by name (``fedavg``, ``fedprox``, ``fedadam``, ``fedyogi``, ``median``,
    ``trimmed_mean``) with its numeric parameters.

    Raises
    ------
    ConfigError
        On an unknown name or parameter.
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    try:
        strategy: Strategy = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy {name}: {exc}") from exc
    return strategy


__all__ = [
    "STRATEGIES",
    "Delta",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Strategy",
    "make_strategy",
]
