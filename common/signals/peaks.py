"""Streaming R-peak (QRS) detection with adaptive thresholds and search-back.

Design (after Pan & Tompkins 1985 and Hamilton & Tompkins 1986, re-derived for any rate):

1. Feature signal, computed chunk by chunk with carried filter state: causal Butterworth
   band-pass (QRS band), first difference, square, moving-window integration.
2. Candidates: local maxima of the integrated signal that are the largest value within
   ``refractory_s`` on both sides; a candidate is final once ``refractory_s`` of signal follows it
   (this sets the decision latency).
3. Classification in time order: a candidate above ``noise + threshold_ratio * (qrs - noise)``
   (mean of the last QRS peak heights, median of the last noise peak heights) is a QRS unless
   it is a T wave (close to the previous QRS, much lower slope). With no QRS for
   ``searchback_rr_factor`` running RRs, the largest earlier candidate above half the threshold
   is taken (search-back).
4. Refinement: the R peak is the sample of largest magnitude of the cleaned ECG (0.5-40 Hz),
   whichever its polarity, in a window around the QRS energy; the band-pass delay is removed.

Every decision uses only samples whose values are final, so any chunking of a record yields
exactly the peaks of one pass over it (:func:`ecg_findpeaks` is that pass).

References: Pan & Tompkins (1985) IEEE TBME 32(3):230-236; Hamilton & Tompkins (1986)
IEEE TBME 33(12):1157-1165.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from common.signals.filters import CausalSosFilter, FilterSpec, as_samples
from common.signals.iir import butter_sos, sos_group_delay
from common.signals.qrs_rules import QRSParams, QRSRules

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class QRSDetector:
    """Streaming R-peak detector: feed ECG chunks, get absolute R-peak sample indices.

    Parameters
    ----------
    sampling_rate : float
        Hz (tested at 128-500 Hz).
    params : QRSParams, optional
        Tuning; the defaults reach the MIT-BIH figures in docs/signals.md.

    Notes
    -----
    A peak is reported once the ``refractory_s`` after its QRS energy maximum has been seen,
    i.e. about ``0.3 s`` after the R peak; peaks recovered by search-back are reported
    ``searchback_rr_factor`` RR intervals after the previous beat (at most
    ``max_searchback_s``); peaks in the first ``learning_s`` are reported when it ends.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 360.0
    >>> t = np.arange(int(10 * fs)) / fs
    >>> ecg = sum(np.exp(-0.5 * ((t - c) / 0.012) ** 2) * 1000 for c in np.arange(0.5, 10, 0.8))
    >>> det = QRSDetector(fs)
    >>> peaks = np.concatenate([det.process(c) for c in np.array_split(ecg, 7)])
    >>> (np.round(peaks / fs, 2)).tolist()[:3]
    [0.5, 1.3, 2.1]
    """

    def __init__(self, sampling_rate: float, params: QRSParams | None = None) -> None:
        fs = float(sampling_rate)
        if not np.isfinite(fs) or fs <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
        p = params if params is not None else QRSParams()
        if not 0 < p.band_hz[0] < p.band_hz[1] < fs / 2:
            raise ValueError(f"QRS band {p.band_hz} Hz does not fit the rate {fs} Hz")
        self.sampling_rate = fs
        self.params = p
        # Refinement runs on a low-passed copy without high-pass: a causal high-pass bends the
        # tail of wide complexes into a deep trough that would out-size their R wave.
        smooth = FilterSpec(method="lowpass", highcut_hz=min(40.0, 0.45 * fs))
        self._clean = CausalSosFilter(smooth.design(fs))
        self._n_int = max(1, round(p.integration_s * fs))
        self._feat_tail = np.zeros(self._n_int - 1)  # last |slope| samples of the previous chunk
        self._w = max(1, round(p.refractory_s * fs))
        # Sample offset from the QRS energy maximum back to the R peak: half the integration
        # window plus the band-pass group delay at ~10 Hz.
        band_sos = butter_sos(2, p.band_hz, "bandpass", fs)
        self._band = CausalSosFilter(band_sos)
        bp_delay = _group_delay_10hz(band_sos, fs)
        self._ma_delay = round(self._n_int / 2 + bp_delay)
        self._clean_delay = round(_group_delay_10hz(smooth.design(fs), fs))
        self._refine_lo = round(p.refine_before_s * fs)
        self._refine_hi = round(p.refine_after_s * fs)
        self._base_lo = round(0.25 * fs)
        self._base_hi = round(0.08 * fs)
        self._slope_half = max(1, round(0.08 * fs))
        self._keep = round((p.max_searchback_s + 1.5) * fs) + self._ma_delay + 4 * self._w
        self._rules = QRSRules(p, fs, self)
        self._prev_band = 0.0
        self._last_value = 0.0  # last input sample (stands in for non-finite ones)
        self._lead_pending: int | None = 0  # non-finite samples before the first finite one
        self._total = 0  # samples received
        self._buf_start = 0  # absolute index of buffer element 0
        self._ma = np.zeros(0)
        self._clean_buf = np.zeros(0)
        self._slope = np.zeros(0)
        self._next_cand = 1  # first absolute index not yet examined for candidacy
        self._last_cand = -(10**12)
        self._last_cand_h = -1.0

    def process(self, chunk: npt.ArrayLike) -> IntArray:
        """Detect R peaks in the next chunk of ECG.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (n, 1)
            Next ECG samples (µV or any unit; detection is amplitude-invariant). Non-finite
            values (dropped samples) repeat the last finite value, so that a glitch never
            poisons the filter state.

        Returns
        -------
        ndarray of int64, shape (k,)
            Absolute sample indices (from the first sample ever processed) of the R peaks
            that became final with this chunk, increasing across calls.
        """
        x = as_samples(chunk)
        if x.size == 0:
            return np.zeros(0, dtype=np.int64)
        finite = np.isfinite(x)
        if self._lead_pending is not None:
            # Before the first finite sample there is nothing to hold: those samples take the
            # first finite value, as a one-pass run over the whole record would.
            if not finite.any():
                self._lead_pending += x.size
                return np.zeros(0, dtype=np.int64)
            first = float(x[int(np.argmax(finite))])
            x = np.concatenate([np.full(self._lead_pending, first), x])
            finite = np.concatenate([np.ones(self._lead_pending, dtype=bool), finite])
            self._last_value, self._lead_pending = first, None
        if not finite.all():
            _LOGGER.warning(
                "QRSDetector: %d non-finite samples held at the last value", int((~finite).sum())
            )
            x = self._hold_last(x, finite)
        self._last_value = float(x[-1])
        band = self._band.process(x)
        deriv = np.diff(band, prepend=self._prev_band) * self.sampling_rate
        self._prev_band = float(band[-1])
        # Moving-window integration as a sum over a sliding view: every output adds the same
        # samples in the same order however the stream is chunked (lfilter/convolve do not).
        feat = np.concatenate([self._feat_tail, np.abs(deriv)])
        ma = sliding_window_view(feat, self._n_int).sum(axis=1) / self._n_int
        self._feat_tail = feat[feat.size - (self._n_int - 1) :]
        self._ma = np.concatenate([self._ma, ma])
        self._slope = np.concatenate([self._slope, np.abs(deriv)])
        self._clean_buf = np.concatenate([self._clean_buf, self._clean.process(x)])
        self._total += x.size
        found = self._scan()
        self._trim()
        return np.asarray(found, dtype=np.int64)

    def _hold_last(self, x: FloatArray, finite: npt.NDArray[np.bool_]) -> FloatArray:
        # A dropped sample repeats the previous one: a jump to 0 would look like a QRS.
        idx = np.where(finite, np.arange(x.size), -1)
        np.maximum.accumulate(idx, out=idx)
        held: FloatArray = np.where(idx >= 0, x[np.maximum(idx, 0)], self._last_value)
        return held

    def _scan(self, final: bool = False) -> list[int]:
        w = self._w
        # Candidates at q < final_upto have their whole look-ahead window (or the stream ended).
        final_upto = self._total if final else self._total - w
        if final_upto <= self._next_cand:
            return self._rules.advance([], final_upto, final)
        lo = max(self._next_cand - w, self._buf_start)
        seg = self._ma[lo - self._buf_start : min(final_upto + w, self._total) - self._buf_start]
        peak_max = _running_max(seg, w)
        start = self._next_cand - lo
        stop = final_upto - lo
        core = seg[start:stop]
        left = seg[start - 1 : stop - 1] if start >= 1 else np.concatenate([[0.0], seg[: stop - 1]])
        is_cand = (core == peak_max[start:stop]) & (core > left) & (core > 0)
        positions = np.flatnonzero(is_cand) + self._next_cand
        cands: list[tuple[int, float]] = []
        for q in positions.tolist():
            h = float(self._ma[q - self._buf_start])
            # A plateau of equal maxima inside one window yields one candidate (the first).
            if q - self._last_cand <= w and h == self._last_cand_h:
                continue
            self._last_cand, self._last_cand_h = q, h
            cands.append((q, h))
        self._next_cand = final_upto
        return self._rules.advance(cands, final_upto, final)

    def _trim(self) -> None:
        excess = (self._total - self._buf_start) - self._keep
        if excess > 0 and self._rules.initialised:
            self._ma = self._ma[excess:]
            self._slope = self._slope[excess:]
            self._clean_buf = self._clean_buf[excess:]
            self._buf_start += excess

    def flush(self) -> IntArray:
        """End of stream: decide the candidates of the last ``refractory_s`` and return them."""
        if self._lead_pending:  # the stream held no finite sample at all
            return np.zeros(0, dtype=np.int64)
        if self._total == 0:
            return np.zeros(0, dtype=np.int64)
        found = self._scan(final=True)
        return np.asarray(found, dtype=np.int64)

    # --- SignalAccess port used by QRSRules -------------------------------------------
    def _span(self, buf: FloatArray, start: int, stop: int) -> tuple[FloatArray, int]:
        lo, hi = max(start, self._buf_start), min(stop, self._total)
        return buf[lo - self._buf_start : max(hi, lo) - self._buf_start], lo

    def peak_slope(self, cand: int) -> float:
        """Largest |d/dt| of the band-passed ECG (units/s) around the candidate's QRS."""
        centre = cand - self._ma_delay
        seg, _ = self._span(self._slope, centre - self._slope_half, centre + self._slope_half + 1)
        return float(seg.max()) if seg.size else 0.0

    def refine_peak(self, cand: int) -> int:
        """R-peak sample: the larger deflection (up or down) from the pre-QRS baseline."""
        centre = cand - self._ma_delay + self._clean_delay
        seg, lo = self._span(
            self._clean_buf, centre - self._refine_lo, centre + self._refine_hi + 1
        )
        if seg.size == 0:
            return max(centre - self._clean_delay, 0)
        base, _ = self._span(self._clean_buf, centre - self._base_lo, centre - self._base_hi)
        baseline = _median(base) if base.size else _median(seg)
        i_max, i_min = int(np.argmax(seg)), int(np.argmin(seg))
        up, down = seg[i_max] - baseline, baseline - seg[i_min]
        best = i_max if up >= down else i_min
        return max(lo + best - self._clean_delay, 0)

    def max_energy(self, start: int, stop: int) -> float:
        """Largest integrated QRS energy in ``[start, stop)``."""
        seg, _ = self._span(self._ma, start, stop)
        return float(seg.max()) if seg.size else 0.0


def _median(values: FloatArray) -> float:
    """Median without np.median's per-call overhead (called once per beat)."""
    n = values.size
    part = np.partition(values, [(n - 1) // 2, n // 2])
    return 0.5 * (float(part[(n - 1) // 2]) + float(part[n // 2]))


def _group_delay_10hz(sos: FloatArray, fs: float) -> float:
    """Group delay in samples at 10 Hz (the centre of the QRS band)."""
    return sos_group_delay(sos, 10.0, fs)


def _running_max(x: FloatArray, half: int) -> FloatArray:
    """Maximum over ``x[i - half : i + half + 1]`` with edge samples repeated.

    ``scipy.ndimage.maximum_filter1d(x, 2 * half + 1, mode="nearest")`` without importing
    ``scipy.ndimage`` (~30 MB resident on the edge). Doubling windows: O(n log half).
    """
    if x.size == 0:
        return x.copy()
    padded = np.concatenate((np.full(half, x[0]), x, np.full(half, x[-1])))
    out = padded.copy()  # out[k] = max(padded[k : k + span]) with span growing to 2 * half + 1
    span = 1
    while span < 2 * half + 1:
        step = min(span, 2 * half + 1 - span)
        out[: out.size - step] = np.maximum(out[: out.size - step], out[step:])
        span += step
    result: FloatArray = out[: x.size]
    return result


def ecg_findpeaks(
    signal: npt.ArrayLike, sampling_rate: float, params: QRSParams | None = None
) -> IntArray:
    """R-peak sample indices of a whole record: :class:`QRSDetector` run over it in one chunk.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        Raw ECG (any unit).
    sampling_rate : float
        Hz.
    params : QRSParams, optional

    Returns
    -------
    ndarray of int64, shape (n_beats,)
        Increasing sample indices of the R peaks; equal to the concatenated outputs of
        ``QRSDetector.process`` over any chunking followed by ``QRSDetector.flush``.
    """
    detector = QRSDetector(sampling_rate, params)
    head = detector.process(signal)
    return np.concatenate([head, detector.flush()])
