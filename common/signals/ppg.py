"""Wrist PPG heart rate that stays right under motion (accelerometer-aided spectral tracking).

The estimator works on 8 s windows advanced by 2 s (the IEEE SPC 2015 / TROIKA protocol), one
window at a time, so the same code runs offline over a whole record (:func:`ppg_rate`) and on the
edge from a stream (:class:`PpgHeartRateTracker`). Steps per window:

1. Band-pass both PPG channels and the three accelerometer axes to 0.4-4 Hz (24-240 bpm) and
   resample to 25 Hz (nothing above 4 Hz matters here, and it keeps the cost low).
2. Motion cancellation in the time domain: each PPG channel minus its least-squares fit on the
   three ACC axes and their +-1-sample shifts (a 9-tap multichannel FIR Wiener filter estimated
   on the window itself), i.e. adaptive noise cancellation with the accelerometer as reference.
3. Zero-padded power spectra (Hann window, 4096 points = 0.37 bpm/bin) of the cleaned channels,
   each normalised to its maximum and summed. Optionally (``acc_spectral_weight > 0``) a
   Wiener-style spectral gain ``P / (P + w * A)`` from averaged ACC spectra (Temko 2017) is
   applied too; on the SPC 2015 training set it did not help after step 2, so it is off.
4. Tracking: an HMM forward filter over heart-rate states 40-200 bpm (0.5 bpm grid). The prior
   is the previous posterior blurred by a Gaussian (``sigma_bpm`` per 2 s step) plus a small
   floor, so the track follows physiological changes, resists a motion peak that appears for a
   few windows, and can still recover after a loss of lock. The likelihood is the normalised
   spectrum to the power ``gamma``. Estimate = posterior-weighted mean around the posterior mode.

All parameters are global (chosen on the 12 SPC 2015 training recordings only, never per
recording); see docs/wrist_and_af.md for the numbers.

References
----------
Z. Zhang, Z. Pi, B. Liu, "TROIKA", IEEE TBME 62(2):522-531, 2015 (2.34 bpm on the 12 training
recordings). A. Temko, "Accurate heart rate monitoring during physical exercises using PPG",
IEEE TBME 64(9):2016-2024, 2017 (Wiener filter, phase vocoder, Viterbi decoding).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# numpy-only filters and resampling: the edge runs this (wrist PPG) without scipy installed
from common.signals.iir import butter_sos
from common.signals.resample import resample_signal
from common.signals.spectral import sosfiltfilt

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Internal processing rate in Hz after decimation.
WORK_RATE_HZ = 25.0
#: FFT length at the work rate: 0.37 bpm per bin.
NFFT = 4096
#: Heart rates considered, bpm.
HR_MIN_BPM = 40.0
HR_MAX_BPM = 200.0
#: Resolution of the tracker's heart-rate grid, bpm.
GRID_BPM = 0.5


@dataclass(frozen=True, slots=True)
class PpgTrackerSettings:
    """Parameters of :class:`PpgHeartRateTracker` (one setting for every recording).

    Attributes
    ----------
    window_s, step_s : float
        Analysis window and step in s.
    acc_lags : int
        ACC shifts (samples at 25 Hz, each side) in the motion-cancelling regression; -1 = off.
    acc_spectral_weight : float
        Weight ``w`` of the optional ACC-spectrum Wiener gain; 0 = off.
    history : int
        Windows averaged in that gain.
    sigma_bpm : float
        Standard deviation of the heart-rate change per step in the tracker, bpm.
    gamma : float
        Exponent sharpening the spectral likelihood.
    floor : float
        Likelihood / prior floor that lets the tracker recover after a loss of lock.
    """

    window_s: float = 8.0
    step_s: float = 2.0
    acc_lags: int = 1
    acc_spectral_weight: float = 0.0
    history: int = 4
    sigma_bpm: float = 5.0
    gamma: float = 2.0
    floor: float = 1e-3

    def __post_init__(self) -> None:
        if not (self.window_s >= 2.0 and 0 < self.step_s <= self.window_s):
            raise ValueError("need window_s >= 2 s and 0 < step_s <= window_s")
        if self.sigma_bpm <= 0 or self.gamma <= 0 or self.floor < 0 or self.history < 1:
            raise ValueError("sigma_bpm, gamma must be > 0, floor >= 0, history >= 1")


@dataclass(frozen=True, slots=True)
class HeartRateEstimate:
    """One heart-rate estimate.

    Attributes
    ----------
    bpm : float
        Heart rate in beats per minute.
    confidence : float
        0..1: posterior probability mass within +-3 bpm of the estimate (low = ambiguous).
    motion : float
        Accelerometer band power (0.4-4 Hz) in the window, in the squared unit of the input
        acceleration; ~0 at rest.
    """

    bpm: float
    confidence: float
    motion: float


def ppg_clean(
    signal: npt.ArrayLike, sampling_rate: float, low_hz: float = 0.4, high_hz: float = 4.0
) -> FloatArray:
    """Band-pass a PPG (or accelerometer) signal with a zero-phase Butterworth filter.

    Parameters
    ----------
    signal : array_like, shape (n_samples,) or (n_samples, n_channels)
        Raw samples (any unit).
    sampling_rate : float
        Hz; must be above ``2 * high_hz``.
    low_hz, high_hz : float
        Pass band in Hz.

    Returns
    -------
    ndarray, same shape, float64
        Filtered signal; non-finite input samples are replaced by 0 before filtering.
    """
    x = np.nan_to_num(np.asarray(signal, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if sampling_rate <= 2 * high_hz:
        raise ValueError(f"sampling_rate {sampling_rate} Hz too low for a {high_hz} Hz band edge")
    sos = butter_sos(4, (low_hz, high_hz), "bandpass", sampling_rate)
    if x.shape[0] == 0:
        return x
    if x.shape[0] <= 3 * (2 * sos.shape[0] + 1):  # too short for filtfilt's edge padding
        return np.asarray(x - x.mean(axis=0), dtype=np.float64)
    if x.ndim == 1:
        return sosfiltfilt(sos, x)
    return np.stack([sosfiltfilt(sos, x[:, j]) for j in range(x.shape[1])], axis=1)


def _to_work_rate(x: FloatArray, sampling_rate: float) -> FloatArray:
    """Band-pass then bring ``x`` (n, ch) to :data:`WORK_RATE_HZ` by polyphase resampling."""
    y = ppg_clean(x, sampling_rate)
    if abs(sampling_rate - WORK_RATE_HZ) < 1e-9:
        return y
    return resample_signal(y, sampling_rate, WORK_RATE_HZ, axis=0)


def _norm_power_spectra(x: FloatArray) -> FloatArray:
    """Power spectra of each column of ``x`` (n, ch), each normalised to max 1; shape (bins, ch)."""
    w = np.hanning(x.shape[0])[:, None]
    p = np.abs(np.fft.rfft((x - x.mean(axis=0)) * w, n=NFFT, axis=0)) ** 2
    peak = p.max(axis=0, keepdims=True)
    return np.asarray(p / np.where(peak > 0, peak, 1.0))


class PpgHeartRateTracker:
    """Stateful per-window heart-rate estimator for wrist PPG + 3-axis accelerometer.

    Feed one analysis window at a time with :meth:`update_window`, or arbitrary chunks with
    :meth:`push` (it buffers samples and emits one estimate per ``step_s``).

    Parameters
    ----------
    sampling_rate : float
        Rate of the PPG and ACC samples in Hz (> 8 Hz; both streams share it, resample first
        otherwise with ``common.signals.resample_signal``).
    settings : PpgTrackerSettings, optional
        Tracker parameters.

    Examples
    --------
    >>> tracker = PpgHeartRateTracker(125.0)
    >>> t = np.arange(0, 8, 1 / 125)
    >>> ppg = np.sin(2 * np.pi * 1.5 * t)[:, None]
    >>> acc = np.zeros((t.size, 3))
    >>> round(tracker.update_window(ppg, acc).bpm)
    90
    """

    def __init__(self, sampling_rate: float, settings: PpgTrackerSettings | None = None) -> None:
        if not np.isfinite(sampling_rate) or sampling_rate <= 2 * 4.0:
            raise ValueError(f"sampling_rate must be > 8 Hz, got {sampling_rate!r}")
        self.sampling_rate = float(sampling_rate)
        self.settings = settings or PpgTrackerSettings()
        cfg = self.settings
        self._freqs_bpm = np.fft.rfftfreq(NFFT, 1.0 / WORK_RATE_HZ) * 60.0
        self._grid = np.arange(HR_MIN_BPM, HR_MAX_BPM + 0.25, GRID_BPM)
        half = int(np.ceil(4 * cfg.sigma_bpm / GRID_BPM))
        kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * GRID_BPM / cfg.sigma_bpm) ** 2)
        self._kernel = kernel / kernel.sum()
        self._win = round(cfg.window_s * self.sampling_rate)
        self._step = round(cfg.step_s * self.sampling_rate)
        self.reset()

    @property
    def last_bpm(self) -> float | None:
        """The last heart rate emitted (bpm), or None before the first window."""
        return self._prev_bpm

    def reset(self) -> None:
        """Forget the tracking state and buffered samples (e.g. after the band was taken off)."""
        self._ppg_hist: deque[FloatArray] = deque(maxlen=self.settings.history)
        self._acc_hist: deque[FloatArray] = deque(maxlen=self.settings.history)
        self._belief: FloatArray | None = None
        self._prev_bpm: float | None = None
        self._buf_ppg: FloatArray | None = None
        self._buf_acc: FloatArray | None = None

    def push(self, ppg: npt.ArrayLike, acc: npt.ArrayLike) -> list[HeartRateEstimate]:
        """Append a chunk of samples; return the estimates of every window completed by it.

        Parameters
        ----------
        ppg : array_like, shape (n,) or (n, n_ppg)
            PPG samples (a.u.) at ``sampling_rate``.
        acc : array_like, shape (n, 3)
            Accelerometer samples (any unit, e.g. mg or g) at the same rate.

        Returns
        -------
        list of HeartRateEstimate
            One per completed window, oldest first (window k covers samples
            ``[k * step, k * step + window)`` of the stream since the last reset).
        """
        p, a = _as_2d(ppg), _as_2d(acc)
        if p.shape[0] != a.shape[0]:
            raise ValueError(f"ppg has {p.shape[0]} samples but acc has {a.shape[0]}")
        self._buf_ppg = p if self._buf_ppg is None else np.vstack([self._buf_ppg, p])
        self._buf_acc = a if self._buf_acc is None else np.vstack([self._buf_acc, a])
        out: list[HeartRateEstimate] = []
        while self._buf_ppg.shape[0] >= self._win:
            out.append(self.update_window(self._buf_ppg[: self._win], self._buf_acc[: self._win]))
            self._buf_ppg = self._buf_ppg[self._step :]
            self._buf_acc = self._buf_acc[self._step :]
        return out

    def update_window(self, ppg: npt.ArrayLike, acc: npt.ArrayLike) -> HeartRateEstimate:
        """Estimate the heart rate of one analysis window and advance the tracker.

        Parameters
        ----------
        ppg : array_like, shape (n,) or (n, n_ppg)
            One window of PPG (a.u.), normally ``window_s`` long (at least 2 s).
        acc : array_like, shape (n, k)
            The same window of acceleration (any unit; k axes, normally 3). All zeros = no
            motion reference (the cancellation step is skipped).

        Returns
        -------
        HeartRateEstimate
        """
        p, a = _as_2d(ppg), _as_2d(acc)
        if p.shape[0] != a.shape[0] or p.shape[0] < 2 * self.sampling_rate:
            raise ValueError(f"need equal windows of >= 2 s; got {p.shape[0]} and {a.shape[0]}")
        xp = _to_work_rate(p, self.sampling_rate)
        xa = _to_work_rate(a, self.sampling_rate)
        motion = float(np.mean(np.sum(xa**2, axis=1)))
        if self.settings.acc_lags >= 0:
            xp = _cancel_motion(xp, xa, self.settings.acc_lags)
        self._ppg_hist.append(_norm_power_spectra(xp))
        self._acc_hist.append(_norm_power_spectra(xa).max(axis=1))
        bpm, conf = self._forward(self._denoised_spectrum())
        self._prev_bpm = bpm
        return HeartRateEstimate(bpm=bpm, confidence=conf, motion=motion)

    def _denoised_spectrum(self) -> FloatArray:
        """Sum of the channels' normalised spectra, with the optional ACC Wiener gain."""
        p_now = self._ppg_hist[-1]
        w = self.settings.acc_spectral_weight
        if w > 0:
            p_bar = np.mean(np.stack(self._ppg_hist), axis=0)
            a_bar = np.mean(np.stack(self._acc_hist), axis=0)[:, None]
            p_now = p_now * p_bar / (p_bar + w * a_bar + 1e-12)
        s = np.sum(p_now, axis=1)
        return np.asarray(s / max(float(s.max()), 1e-12))

    def _forward(self, s: FloatArray) -> tuple[float, float]:
        """One HMM forward step over heart-rate states; returns (bpm, posterior mass near it)."""
        cfg = self.settings
        like = np.interp(self._grid, self._freqs_bpm, s)
        like = (like / max(float(like.max()), 1e-12) + cfg.floor) ** cfg.gamma
        if self._belief is None:
            prior = np.ones_like(self._grid)
        else:
            prior = np.convolve(self._belief, self._kernel, mode="same")
            prior = prior / prior.sum() + cfg.floor / prior.size
        post = prior * like
        post /= post.sum()
        self._belief = post
        i = int(np.argmax(post))
        lo, hi = max(i - 6, 0), min(i + 7, post.size)  # +-3 bpm around the mode
        mass = float(np.sum(post[lo:hi]))
        bpm = float(np.sum(self._grid[lo:hi] * post[lo:hi]) / mass)
        return bpm, min(mass, 1.0)


def _cancel_motion(xp: FloatArray, xa: FloatArray, lags: int) -> FloatArray:
    """Remove the part of each PPG channel (n, c) that is a linear FIR function of the ACC (n, k).

    Least squares over the window on the ACC axes shifted by ``-lags..lags`` samples; columns
    without energy (no accelerometer) are skipped, and with too few samples per regressor the
    PPG is returned unchanged (the fit would also remove heart-rate energy).
    """
    n = xa.shape[0]
    reg = np.hstack([np.roll(xa, lag, axis=0) for lag in range(-lags, lags + 1)])
    scale = np.linalg.norm(reg, axis=0)
    keep = scale > 1e-9 * max(float(scale.max()), 1e-300)
    if not np.any(keep) or reg.shape[1] >= n // 2:
        return xp
    r = reg[:, keep] / scale[keep]
    beta, *_ = np.linalg.lstsq(r, xp, rcond=None)
    return np.asarray(xp - r @ beta)


def _as_2d(x: npt.ArrayLike) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def ppg_rate(
    ppg: npt.ArrayLike,
    acc: npt.ArrayLike,
    sampling_rate: float,
    settings: PpgTrackerSettings | None = None,
) -> FloatArray:
    """Heart rate of a whole recording, one value per window (window k covers [k*step, k*step+win)).

    Parameters
    ----------
    ppg : array_like, shape (n_samples,) or (n_samples, n_ppg)
        PPG channels (a.u.).
    acc : array_like, shape (n_samples, 3)
        Accelerometer axes (any unit) at the same rate.
    sampling_rate : float
        Hz.
    settings : PpgTrackerSettings, optional

    Returns
    -------
    ndarray, shape (n_windows,)
        Heart rate in bpm; ``n_windows = floor((n/fs - window_s) / step_s) + 1``.
    """
    tracker = PpgHeartRateTracker(sampling_rate, settings)
    return np.array([e.bpm for e in tracker.push(ppg, acc)], dtype=np.float64)
