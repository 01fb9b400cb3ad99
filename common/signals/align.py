"""Snap R-peak positions to a reproducible fiducial point of the QRS complex.

Reference annotations and detectors disagree by a few tens of ms on wide or biphasic complexes
(ventricular, paced, bundle-branch beats): one marks the positive wave, the other the negative
one. A model trained on windows centred on annotations and fed windows centred on detections
then sees shifted beats. Passing both through :func:`align_r_peaks` (the ``align_window_s`` of a
:class:`~common.signals.beats.BeatSpec`) puts them on the same point: the largest deflection,
up or down, from the pre-QRS baseline, within a window around the given position.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
BASELINE_START_S = 0.25  # baseline = median of [r - 0.25 s, r - 0.10 s): the PR/TP segment
BASELINE_STOP_S = 0.10


def align_context_samples(sampling_rate: float, window_s: float) -> tuple[int, int]:
    """Samples needed before and after a peak to align it (0, 0 when ``window_s`` is 0)."""
    if window_s <= 0:
        return 0, 0
    half = round(window_s * sampling_rate)
    return max(half, round(BASELINE_START_S * sampling_rate)), half + 1


def align_r_peaks(
    signal: npt.ArrayLike, sampling_rate: float, r_peaks: npt.ArrayLike, window_s: float
) -> IntArray:
    """Move each R peak to the largest deflection from its baseline within ``±window_s``.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        ECG (cleaned, any unit).
    sampling_rate : float
        Hz.
    r_peaks : array_like of int, shape (n_beats,)
        Approximate R-peak indices (annotations or detections).
    window_s : float
        Half-width of the search window in s (0 returns the peaks unchanged). 0.05 s covers
        both phases of a biphasic complex from any starting point inside it.

    Returns
    -------
    ndarray of int64, shape (n_beats,)
        Aligned indices, clipped to the signal. The baseline is the median of
        ``[r - 0.25 s, r - 0.10 s)`` around the *given* position.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros(1000); x[500] = 3.0; x[520] = -5.0
    >>> align_r_peaks(x, 360.0, [505, 515], 0.05).tolist()
    [520, 520]
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    half = round(window_s * sampling_rate)
    if half <= 0 or r.size == 0 or x.size == 0:
        return r.copy()
    last = x.size - 1
    idx = np.clip(r[:, None] + np.arange(-half, half + 1)[None, :], 0, last)
    seg = x[idx]
    b0, b1 = round(BASELINE_START_S * sampling_rate), round(BASELINE_STOP_S * sampling_rate)
    base_idx = np.clip(r[:, None] + np.arange(-b0, -b1)[None, :], 0, last)
    baseline = np.median(x[base_idx], axis=1) if b0 > b1 else np.median(seg, axis=1)
    i_max, i_min = np.argmax(seg, axis=1), np.argmin(seg, axis=1)
    rows = np.arange(r.size)
    up = seg[rows, i_max] - baseline
    down = baseline - seg[rows, i_min]
    best = np.where(up >= down, i_max, i_min)
    aligned: IntArray = np.clip(r - half + best, 0, last).astype(np.int64)
    return aligned
