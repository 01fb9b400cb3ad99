"""Adaptive server optimisers (Reddi et al. 2021, "Adaptive Federated Optimization").

The averaged client delta is a pseudo-gradient; the server keeps first and second moments
(``m.*``, ``v.*`` in the persisted state) and steps ``w + eta * m / (sqrt(v) + tau)``.
Batch-norm statistics of a whole-model release are averaged as in FedAvg (:func:`~cloud_aggregator.aggregation.step_per_tensor`).
:class:`ServerOptimizer` is their common strategy; :mod:`fedadam` and :mod:`fedyogi` differ
only in the second-moment update (:meth:`ServerOptimizer.second_moment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cloud_aggregator.aggregation import step_per_tensor, weighted_mean
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import RoundConfig, Tensors

SecondMoment = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def adam_v(v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
    """Adam: exponential moving average of the squared pseudo-gradient."""
    out: np.ndarray = beta2 * v + (1 - beta2) * d * d
    return out


def yogi_v(v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
    """Yogi: additive, sign-controlled update (slower growth of v on noisy rounds)."""
    d2 = d * d
    out: np.ndarray = v - (1 - beta2) * d2 * np.sign(v - d2)
    return out


def fedopt_step(
    weights: Tensors,
    deltas: Sequence[Delta],
    state: Tensors,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
    second_moment: SecondMoment,
) -> tuple[Tensors, Tensors]:
    """One server-optimiser step; returns (new weights, new state)."""
    grad = weighted_mean([(d, float(n)) for d, n in deltas])

    def adaptive(k: str, w: np.ndarray, d: np.ndarray, new_state: Tensors) -> np.ndarray:
        m = beta1 * state.get(f"m.{k}", np.zeros_like(w)).astype(np.float64) + (1 - beta1) * d
        v0 = state.get(f"v.{k}", np.full_like(w, tau * tau)).astype(np.float64)
        v = second_moment(v0, d, beta2)
        new_state[f"m.{k}"] = m.astype(np.float32)
        new_state[f"v.{k}"] = v.astype(np.float32)
        out: np.ndarray = w + eta * m / (np.sqrt(np.maximum(v, 0.0)) + tau)
        return out

    return step_per_tensor(weights, grad, state, adaptive)


@dataclass(frozen=True)
class ServerOptimizer:
    """Server optimiser over the averaged client deltas (base of FedAdam and FedYogi).

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
    name: str = "fedopt"

    def second_moment(self, v: np.ndarray, d: np.ndarray, beta2: float) -> np.ndarray:
        """New second moment from the old one ``v`` and the pseudo-gradient ``d``."""
        raise NotImplementedError

    def configure(self, config: RoundConfig) -> RoundConfig:
        """Clients train as in FedAvg."""
        return config

    def aggregate(
        self, weights: Tensors, deltas: Sequence[Delta], state: Tensors
    ) -> tuple[Tensors, Tensors]:
        """One server-optimiser step on the pseudo-gradient."""
        return fedopt_step(
            weights,
            deltas,
            state,
            eta=self.eta,
            beta1=self.beta1,
            beta2=self.beta2,
            tau=self.tau,
            second_moment=self.second_moment,
        )
