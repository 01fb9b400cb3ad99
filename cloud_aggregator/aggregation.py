"""Pure numeric helpers of the strategies: a list of (tensors, weight) in, tensors out.

Tensors are ``dict[str, ndarray float32]``; a key has one shape across the list (the validator
guarantees it). Not every update carries every key: in a whole-model round, devices without
torch send the head only. Each key is aggregated over the updates that carry it; a key nobody
sent has no delta (the weight stays). Accumulation is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from common.fl_protocol import Tensors

Result = tuple[Mapping[str, np.ndarray], float]
STACK_ROWS = 256  # updates stacked at once: bounds the memory of whole-model blocks


def _keys(results: Sequence[Result]) -> list[str]:
    """Every key any result carries, in first-seen order."""
    if not results:
        raise ValueError("cannot aggregate an empty list of results")
    return list(dict.fromkeys(k for t, _ in results for k in t))


def _carrying(results: Sequence[Result], key: str) -> list[Result]:
    return [(t, w) for t, w in results if key in t]


def weighted_mean(results: Sequence[Result]) -> Tensors:
    """Mean of the tensors weighted by their weight (FedAvg: the example count), per key over
    the results that carry it."""
    keys = _keys(results)
    if float(sum(w for _, w in results)) <= 0:
        raise ValueError("weights must sum to a positive number")
    out: Tensors = {}
    for k in keys:
        part = _carrying(results, k)
        total = float(sum(w for _, w in part))
        shape = np.shape(part[0][0][k])
        acc = np.zeros(math.prod(shape), np.float64)
        for i in range(0, len(part), STACK_ROWS):  # one product per block, not one per update
            block = part[i : i + STACK_ROWS]
            weights = np.array([w for _, w in block], np.float64)
            acc += weights @ np.stack([np.ravel(t[k]) for t, _ in block])
        out[k] = (acc / total if total > 0 else acc).reshape(shape).astype(np.float32)
    return out


def coordinate_median(results: Sequence[Result]) -> Tensors:
    """Coordinate-wise median (unweighted; robust to < 50 % arbitrary updates), per key."""
    return {
        k: np.median(np.stack([t[k] for t, _ in _carrying(results, k)]), axis=0).astype(np.float32)
        for k in _keys(results)
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
    out: Tensors = {}
    for k in _keys(results):
        part = _carrying(results, k)
        n, cut = len(part), math.floor(beta * len(part))
        stacked = np.sort(np.stack([np.asarray(t[k], np.float64) for t, _ in part]), axis=0)
        out[k] = stacked[cut : n - cut].mean(axis=0).astype(np.float32)
    return out


def l2_norm(tensors: Mapping[str, np.ndarray]) -> float:
    """Global L2 norm over all tensors (float64 accumulation; NaN or inf if a value is).

    One dot product over the tensors joined: per tensor a square, a sum and a conversion cost
    five times as much for the small tensors of a head update (every update is checked).
    """
    if not tensors:
        return 0.0
    flat = np.concatenate([np.ravel(v) for v in tensors.values()]).astype(np.float64, copy=False)
    return math.sqrt(float(flat @ flat))


def clip_by_norm(tensors: Mapping[str, np.ndarray], bound: float) -> tuple[Tensors, bool]:
    """Scale the tensors so their global L2 norm is at most ``bound``; returns (tensors, clipped)."""
    norm = l2_norm(tensors)
    factor = min(1.0, bound / norm) if norm > 0 else 1.0
    return {
        k: (np.asarray(v) * factor).astype(np.float32) for k, v in tensors.items()
    }, factor < 1.0


def add(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], scale: float = 1.0) -> Tensors:
    """``a + scale * b`` per tensor of ``a`` (a tensor ``b`` lacks is kept as it is)."""
    return {
        k: (np.asarray(a[k], np.float64) + scale * np.asarray(b[k], np.float64)).astype(np.float32)
        if k in b
        else np.asarray(a[k], np.float32)
        for k in a
    }


STATISTICS = ("running_mean", "running_var")  # batch-norm buffers in a whole-model release

# One tensor's server step: (name, weight, averaged delta as float64, the new state to write
# into) -> new weight.
TensorStep = Callable[[str, np.ndarray, np.ndarray, Tensors], np.ndarray]


def is_statistic(name: str) -> bool:
    """True for a tensor that holds data statistics, not trained weights (batch-norm running
    mean and variance): a server optimiser averages those instead of stepping them."""
    return name.rsplit(".", 1)[-1] in STATISTICS


def step_per_tensor(
    weights: Tensors, mean: Mapping[str, np.ndarray], state: Tensors, step: TensorStep
) -> tuple[Tensors, Tensors]:
    """A stateful server step, tensor by tensor: a tensor nobody trained keeps its value and
    its state, a batch-norm statistic takes the averaged delta as it is (a scaled or adaptive
    step could drive a variance below zero), every other tensor ``step``. Returns (new
    weights, new state)."""
    new_w: Tensors = {}
    new_state: Tensors = dict(state)
    for k, w in weights.items():
        if k not in mean:
            new_w[k] = w
            continue
        d = np.asarray(mean[k], np.float64)
        new_w[k] = (w + d if is_statistic(k) else step(k, w, d, new_state)).astype(np.float32)
    return new_w, new_state
