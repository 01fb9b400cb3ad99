"""FedTrimmedAvg (Yin et al. 2018): coordinate-wise trimmed mean of the deltas (robust)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_aggregator.aggregation import add, trimmed_mean
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import RoundConfig, Tensors


@dataclass(frozen=True)
class FedTrimmedAvg:
    """Drop the ``beta`` fraction of extreme values at each end of every coordinate.

    Parameters
    ----------
    beta : float
        Fraction trimmed per side, in [0, 0.5).
    """

    beta: float = 0.1
    name: str = "trimmed_mean"

    def __post_init__(self) -> None:
        if not 0 <= self.beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {self.beta}")

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Clients train as in FedAvg."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """``w + trimmed_mean_i(d_i)`` per coordinate."""
        return add(weights, trimmed_mean([(d, 1.0) for d, _ in deltas], self.beta)), dict(state)
