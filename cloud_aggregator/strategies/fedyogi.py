"""FedYogi (Reddi et al. 2021): FedAvg pseudo-gradient with a server-side Yogi step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud_aggregator.strategies.fedopt import ServerOptimizer, yogi_v


@dataclass(frozen=True)
class FedYogi(ServerOptimizer):
    """Server Yogi over the averaged client deltas (parameters: :class:`ServerOptimizer`)."""

    name: str = "fedyogi"

    def second_moment(self, v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
        """Yogi: additive, sign-controlled update of the second moment."""
        return yogi_v(v, d, beta2)
