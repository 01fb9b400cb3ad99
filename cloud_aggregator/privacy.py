"""Client-level differential privacy: clip each update, add Gaussian noise to the sum, account.

DP-FedAvg (McMahan et al. 2018, "Learning differentially private recurrent language models"):
every accepted delta is clipped to L2 norm ``clip``; the clipped deltas are averaged with equal
weights (example counts would leak) and ``N(0, (z * clip)^2)`` noise is added to the sum per
coordinate before dividing by the number of updates ``m``. The privacy loss is tracked with the RDP accountant of
Google's ``dp-accounting`` library, modelling each round as Poisson sampling with
``q = selected / population`` of a Gaussian mechanism with noise multiplier ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dp_accounting
import numpy as np

from cloud_aggregator.aggregation import clip_by_norm
from cloud_aggregator.strategies.base import Delta
from common.fl_protocol import Tensors


@dataclass(frozen=True)
class DpPolicy:
    """Client-level DP settings.

    Attributes
    ----------
    clip : float
        L2 bound per client delta (> 0).
    noise_multiplier : float
        z: noise std = z * clip on the sum (0 disables noise; clipping still applies).
    target_delta : float
        The delta of (epsilon, delta)-DP reported.
    """

    clip: float = 1.0
    noise_multiplier: float = 1.0
    target_delta: float = 1e-5


def privatize(
    deltas: Sequence[Delta], policy: DpPolicy, rng: np.random.Generator
) -> tuple[Tensors, int]:
    """The DP mean of the deltas: ``(sum_i clip(d_i) + N(0, (z*clip)^2 I)) / m``.

    Returns the noisy mean (handed to the strategy as one delta, so server optimisers still
    apply; robust strategies degenerate to it) and how many deltas were clipped.
    """
    if not deltas:
        raise ValueError("no deltas to privatize")
    m = len(deltas)
    n_clipped = 0
    acc: dict[str, np.ndarray] = {}
    for d, _ in deltas:
        c, was = clip_by_norm(d, policy.clip)
        n_clipped += int(was)
        for k, v in c.items():
            acc[k] = acc.get(k, np.zeros(v.shape, np.float64)) + v
    std = policy.noise_multiplier * policy.clip
    out: Tensors = {}
    for k, v in acc.items():
        noise = rng.normal(0.0, std, v.shape) if std > 0 else 0.0
        out[k] = ((v + noise) / m).astype(np.float32)
    return out, n_clipped


def epsilon_after(history: Sequence[tuple[float, float]], target_delta: float) -> float:
    """Epsilon of all DP rounds so far with the RDP accountant.

    Parameters
    ----------
    history : sequence of (q, z)
        Per closed round: sampling probability (selected / population) and noise multiplier.
    target_delta : float
        Delta of the reported (epsilon, delta) guarantee.

    Returns
    -------
    float
        Epsilon (``inf`` if any round had no noise).
    """
    if not history:
        return 0.0
    if any(z <= 0 for _, z in history):
        return float("inf")
    acc = dp_accounting.rdp.RdpAccountant()
    for q, z in history:
        event = dp_accounting.GaussianDpEvent(z)
        if q < 1.0:
            event = dp_accounting.PoissonSampledDpEvent(q, event)
        acc.compose(event)
    return float(acc.get_epsilon(target_delta))
