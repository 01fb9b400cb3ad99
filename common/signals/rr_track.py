"""The RR track: a window's beat-to-beat intervals as a signal aligned with its ECG.

A second input channel for the rhythm model (development option ``rr_track``): each sample
between two R peaks carries the log of that interval over the window's median RR interval, so a
premature beat shows as a dip followed by a compensatory bump and atrial fibrillation as steps
of random height, at the time of the beats the convolution sees in the ECG channel. The RR
summary features give the same information only as whole-window statistics.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.signals.rhythm import RR_MAX_S, RR_MIN_S

TRACK_CLIP = 1.0  # |log(RR / median RR)| bound: RR from 0.37x to 2.7x the median


def rr_track(peaks: npt.ArrayLike, n_samples: int, sampling_rate: float) -> npt.NDArray[np.float32]:
    """The RR track of one window.

    Parameters
    ----------
    peaks : array_like of int
        R-peak sample indices, ascending, inside ``[0, n_samples)``.
    n_samples : int
        Window length, samples.
    sampling_rate : float
        Hz.

    Returns
    -------
    ndarray, shape (n_samples,), float32
        ``log(RR_k / median RR)`` clipped to +-:data:`TRACK_CLIP` on ``[peak_k, peak_k+1)``; 0
        before the first peak, from the last one on, on intervals outside
        :data:`common.signals.rhythm.RR_MIN_S`-``RR_MAX_S`` (0.2-3 s), and everywhere with fewer
        than 3 valid intervals.

    Examples
    --------
    >>> t = rr_track([0, 100, 150, 300], 320, 100.0)  # RR 1.0, 0.5, 1.5 s; median 1.0 s
    >>> [round(float(v), 3) for v in t[[0, 99, 100, 149, 150, 299, 300]]]
    [0.0, 0.0, -0.693, -0.693, 0.405, 0.405, 0.0]
    """
    out = np.zeros(n_samples, dtype=np.float32)
    p = np.asarray(peaks, dtype=np.int64).ravel()
    p = p[(p >= 0) & (p < n_samples)]
    rr = np.diff(p) / sampling_rate
    valid = (rr >= RR_MIN_S) & (rr <= RR_MAX_S)
    if int(valid.sum()) < 3:
        return out
    ratio = np.clip(np.log(rr / np.median(rr[valid])), -TRACK_CLIP, TRACK_CLIP)
    for start, end, value, ok in zip(p[:-1], p[1:], ratio, valid, strict=True):
        if ok:
            out[start:end] = value
    return out
