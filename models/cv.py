"""Model-selection helpers (pure numpy): record-wise stratified folds and record bootstrap.

- :func:`stratified_folds` gives every recording (or patient) one fold in ``0..k-1`` so that each
  class is spread as evenly as possible: the recordings of each class are ordered by a seeded
  hash of their name and dealt round-robin (the same record always lands in the same fold,
  whatever order the records come in, for one seed).
- :func:`bootstrap_ci` resamples whole recordings with replacement and returns the percentile
  interval of a statistic of (labels, predictions), e.g. a mean F1.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]


def stratified_folds(
    records: Sequence[str], labels: npt.ArrayLike, k: int = 5, seed: int = 0
) -> IntArray:
    """Fold index (0..k-1) of every recording, stratified by its label.

    Parameters
    ----------
    records : sequence of str
        Unique recording ids.
    labels : array_like of int, shape (n,)
        Class of each recording.
    k : int
        Number of folds (>= 2).
    seed : int
        Shuffling seed.

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> f = stratified_folds([f"r{i}" for i in range(10)], [0] * 5 + [1] * 5, k=5)
    >>> sorted(np.bincount(f).tolist())
    [2, 2, 2, 2, 2]
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    names = [str(r) for r in records]
    if k < 2 or len(names) != y.size or len(set(names)) != len(names):
        raise ValueError("stratified_folds needs k >= 2 and one label per unique record")
    folds = np.zeros(y.size, dtype=np.int64)
    start = 0
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        # ordered by a seeded hash of the name: independent of the input order
        keys = [hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest() for i in members]
        ordered = members[np.argsort(keys)]
        folds[ordered] = (np.arange(ordered.size) + start) % k
        start += ordered.size  # the next class continues where this one stopped: sizes even out
    return folds


def bootstrap_ci(
    statistic: Callable[[IntArray, IntArray], float],
    labels: npt.ArrayLike,
    predicted: npt.ArrayLike,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(labels, predicted)`` over record resamples.

    Parameters
    ----------
    statistic : callable
        ``(labels, predicted) -> float`` on one resample (one entry per recording).
    labels, predicted : array_like of int, shape (n,)
    n_resamples : int
    level : float
        Coverage, e.g. 0.95.
    seed : int

    Returns
    -------
    (low, high) : tuple of float
        NaN when there are no recordings.
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(predicted, dtype=np.int64).ravel()
    if y.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, y.size, (n_resamples, y.size))
    values = np.array([statistic(y[i], p[i]) for i in draws])
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
