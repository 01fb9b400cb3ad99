"""What the server believes of a round's updates before any strategy sees them (pure).

A device reports its own example count (its FedAvg weight) and sends a delta of its choosing.
Nothing stops a device from claiming a million examples and sending a delta just under the
validation norm bound: one such device in three took 99.98 % of the FedAvg weight and turned
every ventricular beat into Q. Two bounds, applied to every round whatever the strategy:

- **weights**: a claim is capped at the round's ``max_examples`` (a device cannot have trained
  on more) and at ``weight_cap`` times the cohort's median claim, so no device outweighs a few
  typical ones;
- **norms**: among updates carrying the same tensors (whole model, or head only), when at
  least :data:`MIN_COHORT` of them, a delta longer than ``norm_mult`` times their median norm
  is scaled down to it (norm clipping relative to the cohort, as in
  Sun et al. 2019, "Can you really backdoor federated learning?").

Honest updates of a cohort are alike in size, so both bounds leave them untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloud_aggregator.aggregation import clip_by_norm, l2_norm
from cloud_aggregator.strategies.base import Delta

MIN_COHORT = 3  # fewer updates give no meaningful median norm


@dataclass(frozen=True)
class RobustPolicy:
    """Bounds on a round's weights and norms.

    Attributes
    ----------
    weight_cap : float
        Largest weight as a multiple of the median claimed example count (0 = no cap).
    norm_mult : float
        Largest delta norm as a multiple of the cohort's median norm (0 = no clipping).
    """

    weight_cap: float = 3.0
    norm_mult: float = 3.0


@dataclass(frozen=True)
class Bounded:
    """The deltas as the strategy gets them, and what was changed.

    Attributes
    ----------
    deltas : list of (tensors, weight)
        Possibly scaled deltas with capped weights.
    capped : int
        Updates whose weight was capped.
    clipped : int
        Updates whose norm was scaled down.
    norm_bound : float
        The smallest norm bound used (inf when no group was large enough to clip).
    suspects : tuple of int
        Indices of the updates a bound changed (capped or clipped), in input order.
    """

    deltas: list[Delta]
    capped: int
    clipped: int
    norm_bound: float
    suspects: tuple[int, ...] = ()


def bound_updates(deltas: Sequence[Delta], policy: RobustPolicy, max_examples: int) -> Bounded:
    """Cap every update's weight and clip its norm relative to the cohort (see module doc).

    Parameters
    ----------
    deltas : sequence of (tensors, n_examples)
        The round's validated updates.
    policy : RobustPolicy
        The bounds.
    max_examples : int
        The round's cap on local examples (``RoundConfig.max_examples``).
    """
    claims = np.array([max(0, int(n)) for _, n in deltas], np.float64)
    cap = float(max_examples)
    if policy.weight_cap > 0 and len(claims):
        cap = min(cap, max(1.0, policy.weight_cap * float(np.median(claims))))
    weights = [int(min(c, cap)) for c in claims]
    norms = [l2_norm(d) for d, _ in deltas]
    bounds = _norm_bounds(deltas, norms, policy.norm_mult)
    out: list[Delta] = []
    suspects: list[int] = []
    clipped = 0
    for i, ((d, _), w, norm, bound) in enumerate(zip(deltas, weights, norms, bounds, strict=True)):
        if norm > bound:
            d, _ = clip_by_norm(d, bound)
            clipped += 1
        if norm > bound or claims[i] > cap:
            suspects.append(i)
        out.append((d, w))
    capped = int(sum(c > cap for c in claims))
    return Bounded(out, capped, clipped, min(bounds, default=float("inf")), tuple(suspects))


def _norm_bounds(deltas: Sequence[Delta], norms: Sequence[float], mult: float) -> list[float]:
    """Each update's norm bound: ``mult`` x the median norm of the updates with its tensors
    (a head-only update is not measured against whole-model ones); inf in small groups."""
    groups: dict[frozenset[str], list[int]] = {}
    for i, (d, _) in enumerate(deltas):
        groups.setdefault(frozenset(d), []).append(i)
    bounds = [float("inf")] * len(deltas)
    if mult <= 0:
        return bounds
    for members in groups.values():
        if len(members) >= MIN_COHORT:
            bound = mult * float(np.median([norms[i] for i in members]))
            for i in members:
                bounds[i] = bound
    return bounds
