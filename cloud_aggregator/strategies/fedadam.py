"""FedAdam (Reddi et al. 2021): FedAvg pseudo-gradient with a server-side Adam step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud_aggregator.strategies.base import Delta
from cloud_aggregator.strategies.fedopt import adam_v, fedopt_step
from common.fl_protocol import RoundConfig, Tensors


@dataclass(frozen=True)
class FedAdam:
    """Server Adam over the averaged client deltas.

    Parameters
    ----------
    eta : float
        Server learning rate.
    beta1, beta2 : float
        Moment decay rates.
    tau : float
        Adaptivity (also the initial sqrt(v)); larger = closer to FedAvg with momentum.
    """

    eta: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    name: str = "fedadam"

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Clients train as in FedAvg."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """One Adam step on the pseudo-gradient."""
        return fedopt_step(
            weights,
            deltas,
            state,
            eta=self.eta,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
            second_moment=adam_v,
        )
