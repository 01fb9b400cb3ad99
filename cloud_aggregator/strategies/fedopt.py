"""Adaptive server optimisers (Reddi et al. 2021, "Adaptive Federated Optimization").

The averaged client delta is a pseudo-gradient; the server keeps first and second moments
(``m.*``, ``v.*`` in the persisted state) and steps ``w + eta * m / (sqrt(v) + tau)``.
:mod:`fedadam` and :mod:`fedyogi` differ only in the second-moment update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cloud_aggregator.aggregation import weighted_mean
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import Tensors

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
    new_w: Tensors = {}
    new_state: Tensors = dict(state)
    for k, w in weights.items():
        d = grad[k].astype(np.float64)
        m = beta1 * state.get(f"m.{k}", np.zeros_like(w)).astype(np.float64) + (1 - beta1) * d
        v0 = state.get(f"v.{k}", np.full_like(w, tau * tau)).astype(np.float64)
        v = second_moment(v0, d, beta2)
        new_w[k] = (w + eta * m / (np.sqrt(np.maximum(v, 0.0)) + tau)).astype(np.float32)
        new_state[f"m.{k}"] = m.astype(np.float32)
        new_state[f"v.{k}"] = v.astype(np.float32)
    return new_w, new_state
