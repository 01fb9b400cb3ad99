"""The strategy port: how a round's accepted updates become the next global weights.

A strategy is pure. Its only state (server optimiser moments) is passed in and returned, so the
service can persist it in the store with the model and resume after a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from common.fl_protocol import RoundConfig, Tensors

# One accepted update: (delta = local - global, number of local examples).
Delta = tuple[Mapping[str, np.ndarray], int]


class Strategy(Protocol):
    """What the round service needs from an aggregation strategy."""

    name: str

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Adjust the clients' round config (FedProx sets ``mu``)."""

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """Return (new global weights, new server state) from the accepted deltas."""
