"""FedMedian (Yin et al. 2018): coordinate-wise median of the deltas (Byzantine-robust)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_aggregator.aggregation import add, coordinate_median
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import RoundConfig, Tensors


@dataclass(frozen=True)
class FedMedian:
    """Coordinate-wise median; ignores example counts (a liar could inflate them)."""

    name: str = "median"

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Clients train as in FedAvg."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """``w + median_i(d_i)`` per coordinate."""
        return add(weights, coordinate_median([(d, 1.0) for d, _ in deltas])), dict(state)
