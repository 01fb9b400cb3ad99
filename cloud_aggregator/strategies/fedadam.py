"""FedAdam (Reddi et al. 2021): FedAvg pseudo-gradient with a server-side Adam step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud_aggregator.strategies.fedopt import ServerOptimizer, adam_v


@dataclass(frozen=True)
class FedAdam(ServerOptimizer):
    """Server Adam over the averaged client deltas (parameters: :class:`ServerOptimizer`)."""

    name: str = "fedadam"

    def second_moment(self, v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
        """Adam: exponential moving average of the squared pseudo-gradient."""
        return adam_v(v, d, beta2)
