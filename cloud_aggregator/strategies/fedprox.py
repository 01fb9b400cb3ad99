"""FedProx (Li et al. 2020): FedAvg aggregation; clients add ``mu/2 * ||w - w_global||^2``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_aggregator.strategies.base import Delta
from cloud_aggregator.strategies.fedavg import FedAvg
from common.fl_protocol import RoundConfig, Tensors


@dataclass(frozen=True)
class FedProx:
    """FedProx: the proximal coefficient travels to the clients in the round config.

    Parameters
    ----------
    mu : float
        Proximal coefficient (> 0; 0 would be FedAvg).
    """

    mu: float = 0.01
    name: str = "fedprox"

    def __post_init__(self) -> None:
        if self.mu <= 0:
            raise ValueError(f"FedProx needs mu > 0, got {self.mu}")

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Set the clients' proximal term."""
        return dataclasses.replace(config, mu=self.mu)

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """Same server step as FedAvg."""
        return FedAvg().aggregate(weights, deltas, state)
