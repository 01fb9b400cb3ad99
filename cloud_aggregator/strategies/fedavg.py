"""FedAvg (McMahan et al. 2017): example-weighted mean of the client deltas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_aggregator.aggregation import add, weighted_mean
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import RoundConfig, Tensors


@dataclass(frozen=True)
class FedAvg:
    """FedAvg with an optional server learning rate (1.0 = the classic algorithm).

    Parameters
    ----------
    server_lr : float
        Step applied to the averaged delta.
    """

    server_lr: float = 1.0
    name: str = "fedavg"

    def configure(self, config: RoundConfig) -> RoundConfig:
        """FedAvg leaves the round config as it is."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """``w + server_lr * sum(n_i * d_i) / sum(n_i)``."""
        mean = weighted_mean([(d, float(n)) for d, n in deltas])
        return add(weights, mean, self.server_lr), dict(state)
