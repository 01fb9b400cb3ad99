"""One round's aggregation, without I/O: stored update blobs in, new weights and metrics out.

The service hands over what the store holds (the accepted updates' wire bytes and metrics)
and the previous model; this module decodes them, applies client-level DP when configured and
the strategy, and computes the round metrics. Kept apart from the service so it is testable
and reused by benchmarks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloud_aggregator.privacy import DpPolicy, epsilon_after, privatize
from cloud_aggregator.robust import RobustPolicy, bound_updates
from cloud_aggregator.strategies.base import Delta, Strategy
from common import fl_protocol as fl
from common.protocol import ProtocolError

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredUpdate:
    """An accepted update as the store returns it.

    ``update`` is the same update already decoded (the intake's, for a blob of the same
    digest); ``blob`` may then be empty, as the store was not asked for it.
    """

    client_id: str
    blob: bytes
    metrics: dict[str, object]
    update: fl.ClientUpdate | None = None


@dataclass(frozen=True)
class RoundResult:
    """Outcome of :func:`aggregate_round`.

    Attributes
    ----------
    weights, state : Tensors
        New global tensors and the strategy's server state.
    metrics : dict of str to float
        ``received``, ``uplink_bytes_mean``, ``weights_capped`` and ``norms_clipped`` (updates
        the robust bounds changed) and, with DP, ``dp_clipped`` and ``dp_epsilon``.
    client_metrics : dict
        Per client: the numeric metrics it reported (``loss``, ``bytes``...).
    suspects : tuple of str
        Clients whose update a robust bound changed (weight capped or norm clipped).
    """

    weights: fl.Tensors
    state: fl.Tensors
    metrics: dict[str, float]
    client_metrics: dict[str, dict[str, float]]
    suspects: tuple[str, ...] = ()


def aggregate_round(
    weights: fl.Tensors,
    state: fl.Tensors,
    updates: Sequence[StoredUpdate],
    strategy: Strategy,
    *,
    dp: DpPolicy | None = None,
    dp_history: Sequence[tuple[float, float]] = (),
    dp_q: float = 1.0,
    rng: np.random.Generator | None = None,
    robust: RobustPolicy | None = None,
    max_examples: int = 1_000_000,
    exclude: frozenset[str] = frozenset(),
) -> RoundResult | None:
    """Aggregate a round's updates; None if none of them is readable.

    Every update's weight is capped and its norm clipped relative to the cohort first
    (:mod:`cloud_aggregator.robust`), whatever the strategy.

    Parameters
    ----------
    robust : RobustPolicy, optional
        Bounds on weights and norms (the defaults when omitted).
    max_examples : int
        The round's cap on local examples: no device can claim a larger weight.
    exclude : frozenset of str
        Clients left out (the release gate's second try without the suspects).
    dp : DpPolicy, optional
        Client-level DP (clip + noise); the noisy mean goes to the strategy as one delta.
    dp_history : sequence of (q, z)
        Earlier DP rounds, for the cumulative epsilon.
    dp_q : float
        This round's sampling probability (selected / eligible).
    """
    deltas: list[Delta] = []
    client_metrics: dict[str, dict[str, float]] = {}
    senders: list[str] = []
    for up in updates:
        if up.client_id in exclude:
            continue
        try:
            u = up.update if up.update is not None else fl.decode_update(up.blob)
        except ProtocolError as exc:  # only if the store was tampered with
            _LOGGER.error("stored update of %s unreadable: %s", up.client_id, exc)
            continue
        deltas.append((u.delta, u.n_examples))
        senders.append(up.client_id)
        client_metrics[up.client_id] = {
            k: float(v) for k, v in up.metrics.items() if isinstance(v, (int, float))
        }
    if not deltas:
        return None
    bounded = bound_updates(deltas, robust or RobustPolicy(), max_examples)
    deltas = bounded.deltas
    metrics: dict[str, float] = {
        "weights_capped": float(bounded.capped),
        "norms_clipped": float(bounded.clipped),
    }
    if dp is not None:
        mean, n_clipped = privatize(deltas, dp, rng or np.random.default_rng())
        new_w, new_state = strategy.aggregate(weights, [(mean, 1)], state)
        eps = epsilon_after([*dp_history, (dp_q, dp.noise_multiplier)], dp.target_delta)
        metrics.update(dp_clipped=float(n_clipped), dp_epsilon=eps)
    else:
        new_w, new_state = strategy.aggregate(weights, deltas, state)
    metrics["received"] = float(len(deltas))
    metrics["uplink_bytes_mean"] = float(
        np.mean([m.get("bytes", 0.0) for m in client_metrics.values()])
    )
    suspects = tuple(senders[i] for i in bounded.suspects)
    return RoundResult(new_w, new_state, metrics, client_metrics, suspects)
