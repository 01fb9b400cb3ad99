"""RR-interval features per beat, in batch and streaming, bit-identical.

For beat ``i`` at sample ``r[i]`` (intervals ``d[j] = r[j+1] - r[j]`` in samples):

``rr_pre``
    ``(r[i] - r[i-1]) / fs`` s. The first beat uses its ``rr_post``.
``rr_post``
    ``(r[i+1] - r[i]) / fs`` s. Needs the *next* R peak: a stream emits beat ``i`` only once
    beat ``i+1`` is detected (one-beat delay, typically 0.6-1.2 s). The last beat of a finished
    record (or :meth:`RRTracker.flush`) uses its ``rr_pre``.
``rr_local``
    Mean of the last ``spec.rr_local_beats`` intervals up to and including ``rr_pre`` (causal:
    past beats only).
``rr_long``
    Mean of the past intervals that end within ``spec.rr_long_s`` seconds before ``r[i]``
    (including ``rr_pre``).
``*_ratio``
    Quotients of the above (``rr_pre_local_ratio = rr_pre / rr_local`` ...), unit-free.

Means are computed from integer sums of sample counts, so the batch function and the streaming
tracker produce the same float64 bits. With a single beat there is no interval: all values are
NaN.

References
----------
de Chazal P, O'Dwyer M, Reilly RB (2004), Automatic classification of heartbeats using ECG
morphology and heartbeat interval features, IEEE Trans Biomed Eng 51(7):1196-1206.
Mondejar-Guerra V et al. (2019), Heartbeat classification fusing temporal and morphological
information of ECGs via ensemble of classifiers, Biomed Signal Process Control 47:41-48.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import numpy.typing as npt

from common.signals.beats import BeatSpec

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _assemble(
    pre: FloatArray, post: FloatArray, local: FloatArray, long: FloatArray, spec: BeatSpec
) -> FloatArray:
    columns = {
        "rr_pre": pre,
        "rr_post": post,
        "rr_local": local,
        "rr_long": long,
        "rr_pre_local_ratio": pre / local,
        "rr_post_local_ratio": post / local,
        "rr_pre_long_ratio": pre / long,
        "rr_local_long_ratio": local / long,
    }
    if not spec.rr_features:
        return np.zeros((pre.size, 0), dtype=np.float64)
    return np.stack([columns[name] for name in spec.rr_features], axis=1)


def _check_peaks(r: IntArray) -> None:
    if r.size > 1 and np.any(np.diff(r) <= 0):
        raise ValueError("R peaks must be strictly increasing sample indices")


def rr_features(r_peaks: npt.ArrayLike, sampling_rate: float, spec: BeatSpec) -> FloatArray:
    """RR features of every beat of a finished record.

    Parameters
    ----------
    r_peaks : array_like of int, shape (n_beats,)
        Strictly increasing R-peak sample indices.
    sampling_rate : float
        Rate of those indices in Hz.
    spec : BeatSpec
        Which features (``spec.rr_features``) and averaging spans.

    Returns
    -------
    ndarray, shape (n_beats, len(spec.rr_features)), float64
        Seconds for ``rr_pre/rr_post/rr_local/rr_long``, unit-free for ratios.

    Examples
    --------
    >>> spec = BeatSpec(rr_features=("rr_pre", "rr_post", "rr_pre_local_ratio"))
    >>> rr_features([0, 360, 720, 900], 360.0, spec).round(3).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.5, 1.0], [0.5, 0.5, 0.6]]
    """
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    _check_peaks(r)
    n = r.size
    fs = float(sampling_rate)
    if n < 2:
        nan = np.full(n, np.nan)
        return _assemble(nan, nan, nan, nan, spec)
    d = np.diff(r)  # d[j] ends at r[j + 1]
    csum = np.concatenate([[0], np.cumsum(d)])
    i = np.arange(n)
    pre_s = d[np.maximum(i - 1, 0)]
    post_s = np.concatenate([d, d[-1:]])
    hi = np.maximum(i, 1)  # intervals d[:hi] are known at beat i (d[0] for the first beat)
    lo_local = np.maximum(hi - spec.rr_local_beats, 0)
    long_span = int(round(spec.rr_long_s * fs))
    lo_long = np.searchsorted(r[1:], r - long_span, side="right")
    lo_long = np.minimum(lo_long, hi - 1)
    local = (csum[hi] - csum[lo_local]).astype(np.float64) / (hi - lo_local) / fs
    long = (csum[hi] - csum[lo_long]).astype(np.float64) / (hi - lo_long) / fs
    return _assemble(pre_s / fs, post_s / fs, local, long, spec)


class RRTracker:
    """Streaming :func:`rr_features`: feed R peaks as they are detected, get finished beats.

    Parameters
    ----------
    sampling_rate : float
        Rate of the peak indices in Hz.
    spec : BeatSpec
        Feature selection and averaging spans.

    Examples
    --------
    >>> spec = BeatSpec(rr_features=("rr_pre", "rr_post"))
    >>> t = RRTracker(360.0, spec)
    >>> t.push([0, 360])[0].tolist()          # beat 0 is ready once beat 1 is known
    [0]
    >>> t.push([720])[1].tolist()
    [[1.0, 1.0]]
    >>> t.flush()[0].tolist()                 # end of stream: the last beat
    [720]
    """

    def __init__(self, sampling_rate: float, spec: BeatSpec) -> None:
        self.sampling_rate = float(sampling_rate)
        self.spec = spec
        self._long_span = int(round(spec.rr_long_s * self.sampling_rate))
        self._pending: int | None = None  # last peak, features not emitted yet
        self._prev_rr: int | None = None  # interval ending at the pending peak
        self._local: deque[int] = deque(maxlen=spec.rr_local_beats)
        self._long: deque[tuple[int, int]] = deque()  # (end sample, interval)
        self._long_sum = 0

    def _features(self, peak: int, pre: int, post: int) -> tuple[float, ...]:
        # Intervals known at this beat: everything up to and including ``pre``.
        while self._long and self._long[0][0] <= peak - self._long_span and len(self._long) > 1:
            self._long_sum -= self._long.popleft()[1]
        fs = self.sampling_rate
        local = float(sum(self._local)) / len(self._local) / fs
        long = float(self._long_sum) / len(self._long) / fs
        return pre / fs, post / fs, local, long

    def _add_interval(self, end: int, interval: int) -> None:
        self._local.append(interval)
        self._long.append((end, interval))
        self._long_sum += interval

    def push(self, r_peaks: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
        """Add newly detected peaks (absolute indices, increasing, after any earlier ones).

        Returns
        -------
        peaks : ndarray of int64, shape (m,)
            Beats whose features are now final (all but the newest peak).
        features : ndarray, shape (m, len(spec.rr_features))
        """
        new = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
        _check_peaks(new)
        if new.size and self._pending is not None and new[0] <= self._pending:
            raise ValueError("R peaks must come after the ones already pushed")
        rows: list[tuple[float, ...]] = []
        done: list[int] = []
        for peak in new.tolist():
            if self._pending is not None:
                interval = peak - self._pending
                if self._prev_rr is None:  # first beat: its own post interval stands in
                    self._add_interval(peak, interval)
                    rows.append(self._features(self._pending, interval, interval))
                else:
                    rows.append(self._features(self._pending, self._prev_rr, interval))
                    self._add_interval(peak, interval)
                done.append(self._pending)
                self._prev_rr = interval
            self._pending = peak
        return self._emit(done, rows)

    def flush(self) -> tuple[IntArray, FloatArray]:
        """End of stream: emit the last pending beat (``rr_post`` = its ``rr_pre``)."""
        if self._pending is None:
            return self._emit([], [])
        peak, self._pending = self._pending, None
        if self._prev_rr is None:
            nan = float("nan")
            return self._emit([peak], [(nan, nan, nan, nan)])
        return self._emit([peak], [self._features(peak, self._prev_rr, self._prev_rr)])

    def _emit(self, done: list[int], rows: list[tuple[float, ...]]) -> tuple[IntArray, FloatArray]:
        values = np.array(rows, dtype=np.float64).reshape(-1, 4)
        feats = _assemble(values[:, 0], values[:, 1], values[:, 2], values[:, 3], self.spec)
        return np.array(done, dtype=np.int64), feats
