"""FedAvg (McMahan et al. 2017): example-weighted mean of the client deltas, with optional
server momentum (FedAvgM, Hsu et al. 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloud_aggregator.aggregation import step_per_tensor, weighted_mean
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import RoundConfig, Tensors

BUFFER = "fedavg.v."  # server state: the momentum buffer of each tensor


@dataclass(frozen=True)
class FedAvg:
    """FedAvg with a server learning rate (1.0 = the classic algorithm) and momentum.

    With momentum the server steps along ``v = momentum * v + mean delta``: directions the
    cohorts agree on build up to ``server_lr / (1 - momentum)`` times the averaged delta, while
    the first rounds (``v`` starts at zero) and directions that flip between cohorts move by
    about ``server_lr`` times it.

    Parameters
    ----------
    server_lr : float
        Step applied to the averaged delta (or to the momentum buffer).
    momentum : float
        Server momentum in [0, 1); 0 = plain FedAvg (no state kept).
    """

    server_lr: float = 1.0
    momentum: float = 0.0
    name: str = "fedavg"

    def __post_init__(self) -> None:
        if not self.server_lr > 0:
            raise ValueError(f"server_lr must be positive, got {self.server_lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

    def configure(self, config: RoundConfig) -> RoundConfig:
        """FedAvg leaves the round config as it is."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """``w + server_lr * v`` with ``v = momentum * v + sum(n_i * d_i) / sum(n_i)``;
        batch-norm statistics take the plain mean (a scaled or accumulated step could drive a
        variance below zero)."""
        mean = weighted_mean([(d, float(n)) for d, n in deltas])

        def step(k: str, w: np.ndarray, d: np.ndarray, new_state: Tensors) -> np.ndarray:
            if self.momentum > 0:
                d = self.momentum * state.get(BUFFER + k, np.zeros_like(w)) + d
                new_state[BUFFER + k] = d.astype(np.float32)
            out: np.ndarray = w + self.server_lr * d
            return out

        return step_per_tensor(weights, mean, state, step)
