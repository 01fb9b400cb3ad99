"""Pure numeric helpers of the strategies: a list of (tensors, weight) in, tensors out.

Tensors are ``dict[str, ndarray float32]`` with identical keys and shapes across the list (the
validator guarantees it before anything reaches these functions). Accumulation is float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from common.fl_protocol import Tensors

Result = tuple[Mapping[str, np.ndarray], float]


def _keys(results: Sequence[Result]) -> list[str]:
    if not results:
        raise ValueError("cannot aggregate an empty list of results")
    return list(results[0][0].keys())


def weighted_mean(results: Sequence[Result]) -> Tensors:
    """Mean of the tensors weighted by their weight (FedAvg: the example count)."""
    keys = _keys(results)
    total = float(sum(w for _, w in results))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    out: Tensors = {}
    for k in keys:
        acc = np.zeros(np.shape(results[0][0][k]), np.float64)
        for t, w in results:
            acc += np.asarray(t[k], np.float64) * w
        out[k] = (acc / total).astype(np.float32)
    return out


def coordinate_median(results: Sequence[Result]) -> Tensors:
    """Coordinate-wise median (unweighted; robust to < 50 % arbitrary updates)."""
    keys = _keys(results)
    return {
        k: np.median(np.stack([t[k] for t, _ in results]), axis=0).astype(np.float32) for k in keys
    }


def trimmed_mean(results: Sequence[Result], beta: float) -> Tensors:
    """Coordinate-wise mean after dropping the ``beta`` fraction lowest and highest values.

    Parameters
    ----------
    beta : float
        Fraction cut at each end, in [0, 0.5); ``floor(beta * n)`` values per side.
    """
    if not 0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), got {beta}")
    keys = _keys(results)
    n = len(results)
    cut = math.floor(beta * n)
    out: Tensors = {}
    for k in keys:
        stacked = np.sort(np.stack([np.asarray(t[k], np.float64) for t, _ in results]), axis=0)
        out[k] = stacked[cut : n - cut].mean(axis=0).astype(np.float32)
    return out


def l2_norm(tensors: Mapping[str, np.ndarray]) -> float:
    """Global L2 norm over all tensors."""
    return math.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in tensors.values()))


def clip_by_norm(tensors: Mapping[str, np.ndarray], bound: float) -> tuple[Tensors, bool]:
    """Scale the tensors so their global L2 norm is at most ``bound``; returns (tensors, clipped)."""
    norm = l2_norm(tensors)
    factor = min(1.0, bound / norm) if norm > 0 else 1.0
    return {
        k: (np.asarray(v) * factor).astype(np.float32) for k, v in tensors.items()
    }, factor < 1.0


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], scale: float = 1.0) -> Tensors:
    """``a + scale * b`` per tensor."""
    return {
        k: (np.asarray(a[k], np.float64) + scale * np.asarray(b[k], np.float64)).astype(np.float32)
        for k in a
    }
