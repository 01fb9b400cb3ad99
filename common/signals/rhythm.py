"""Rhythm features: RR-interval irregularity (AF detection) and atrial activity (AF termination).

Two families, both pure numpy/scipy and used identically in training (``models.tasks.rhythm``,
``models.tasks.aft``) and on the edge:

- :func:`rr_irregularity` turns the R peaks of a window (~30 s) into irregularity statistics:
  coefficient of variation, normalised RMSSD, turning-point ratio, sample entropy and COSEn of the
  RR series (Lake & Moorman 2011), share of successive differences > 50 ms, and the normalised
  mean absolute successive difference. AF shows up as high, *unstructured* variability.
- :func:`qrst_cancel` removes the ventricular activity by average beat subtraction, leaving the
  atrial activity; :func:`atrial_spectrum_features` gives its dominant atrial frequency (DAF, Hz)
  and spectral concentration. A low DAF is the classic marker of imminent AF termination
  (Petrutiu et al. 2004; Nilsson et al. 2004; Cantini et al. 2004).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from common.signals.iir import butter_sos
from common.signals.resample import map_indices, resample_signal
from common.signals.spectral import sosfiltfilt, welch

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Names of :func:`rr_irregularity` outputs, in order (units in the docstring).
RR_IRREGULARITY_FEATURES: tuple[str, ...] = (
    "hr_bpm",
    "rr_cv",
    "rmssd_norm",
    "pnn50",
    "turning_point_ratio",
    "sample_entropy",
    "cosen",
    "madsd_norm",
    "rr_range_norm",
    "near_median_fraction",
    "rr_acf_max",
    "valid_fraction",
)
RR_MIN_S, RR_MAX_S = 0.2, 3.0  # plausible RR intervals, s: outside, a detector error or a pause


def sample_entropy(x: npt.ArrayLike, m: int = 2, r: float = 0.2) -> float:
    """Sample entropy SampEn(m, r * std) of a short series (Richman & Moorman 2000).

    Parameters
    ----------
    x : array_like, shape (n,)
    m : int
        Template length.
    r : float
        Tolerance as a fraction of the standard deviation.

    Returns
    -------
    float
        ``-ln(A / B)``; when no match of length m+1 exists the bound ``ln(n_pairs_m)`` is
        returned (maximally irregular), and 0 for a constant or too short series.

    Examples
    --------
    >>> round(sample_entropy(np.tile([1.0, 2.0], 20)), 3)
    0.0
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    n = v.size
    sd = float(np.std(v)) if n else 0.0
    if n < m + 3 or sd <= 0 or not np.isfinite(sd):
        return 0.0
    tol = r * sd

    def matches(k: int) -> int:
        emb = np.lib.stride_tricks.sliding_window_view(v, k)[: n - m]
        dist = np.max(np.abs(emb[:, None, :] - emb[None, :, :]), axis=2)
        return int((np.sum(dist <= tol) - emb.shape[0]) // 2)

    b, a = matches(m), matches(m + 1)
    if b == 0:
        return 0.0
    if a == 0:
        return float(np.log(b))
    return max(0.0, float(-np.log(a / b)))


def rr_irregularity(r_peaks: npt.ArrayLike, sampling_rate: float) -> FloatArray:
    """Irregularity features of the RR series of one window.

    Parameters
    ----------
    r_peaks : array_like of int, shape (n_beats,)
        R-peak sample indices (increasing) inside the window.
    sampling_rate : float
        Hz.

    Returns
    -------
    ndarray, shape (len(RR_IRREGULARITY_FEATURES),)
        ``hr_bpm`` (bpm), ``rr_cv`` (ratio), ``rmssd_norm`` (RMSSD / mean RR), ``pnn50`` (share of
        |dRR| > 50 ms), ``turning_point_ratio`` (~0.67 for random series), ``sample_entropy``
        (m=2, r=0.2 SD), ``cosen`` (SampEn + ln(2r[s]) - ln(mean RR[s]), Lake & Moorman 2011),
        ``madsd_norm`` (median |dRR| / median RR), ``rr_range_norm`` ((p90 - p10) / median RR), ``near_median_fraction`` (share of RR within 10 % of the
        median: high for sinus rhythm with isolated ectopic beats, low in AF), ``rr_acf_max`` (largest
        |autocorrelation| at lags 1-3: bigeminy/trigeminy patterns are periodic, AF is not),
        ``valid_fraction`` (share of RR intervals inside 0.2-3 s). With fewer than 4 valid RR
        intervals every feature is 0 except ``valid_fraction``.

    Examples
    --------
    >>> peaks = np.arange(0, 30 * 128, 128)  # 60 bpm, perfectly regular
    >>> f = rr_irregularity(peaks, 128.0)
    >>> float(f[0]), float(f[1])
    (60.0, 0.0)
    """
    if not np.isfinite(sampling_rate) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
    r = np.asarray(r_peaks, dtype=np.float64).ravel()
    out = np.zeros(len(RR_IRREGULARITY_FEATURES))
    rr_all = np.diff(r) / sampling_rate
    if rr_all.size == 0:
        return out
    ok = (rr_all >= RR_MIN_S) & (rr_all <= RR_MAX_S) & np.isfinite(rr_all)
    out[-1] = float(np.mean(ok))
    rr = rr_all[ok]
    if rr.size < 4:
        return out
    mean, med = float(rr.mean()), float(np.median(rr))
    d = np.diff(rr)
    tp = np.sum((d[:-1] * d[1:]) < 0) / max(d.size - 1, 1)
    sampen = sample_entropy(rr, 2, 0.2)
    tol_s = 0.2 * float(np.std(rr))
    cosen = sampen + np.log(2 * tol_s) - np.log(mean) if tol_s > 0 else 0.0
    out[:-1] = [
        60.0 / mean,
        float(np.std(rr)) / mean,
        float(np.sqrt(np.mean(d**2))) / mean,
        float(np.mean(np.abs(d) > 0.05)),
        float(tp),
        sampen,
        float(cosen),
        float(np.median(np.abs(d))) / med,
        float(np.percentile(rr, 90) - np.percentile(rr, 10)) / med,
        float(np.mean(np.abs(rr - med) <= 0.1 * med)),
        _acf_max(rr, 3),
    ]
    return out


def _acf_max(rr: FloatArray, max_lag: int) -> float:
    """Largest |autocorrelation| of the RR series at lags 1..max_lag (patterned ectopy -> high)."""
    d = rr - rr.mean()
    denom = float(d @ d)
    if denom <= 0 or d.size <= max_lag + 2:
        return 0.0
    return max(abs(float(d[:-k] @ d[k:]) / denom) for k in range(1, max_lag + 1))


def qrst_cancel(
    ecg: npt.ArrayLike,
    sampling_rate: float,
    r_peaks: npt.ArrayLike,
    before_s: float = 0.1,
    after_s: float = 0.45,
) -> FloatArray:
    """Atrial activity by average beat subtraction (QRST cancellation) on one lead.

    The lead is band-passed 0.5-40 Hz; the mean beat over ``[R - before_s, R + after_s)`` is
    subtracted at every R peak (scaled by least squares to each beat, tapered at its ends), and
    the QRS core (R +- 50 ms) that always leaves residue is set to 0.

    Parameters
    ----------
    ecg : array_like, shape (n,)
        One ECG lead (any unit).
    sampling_rate : float
        Hz.
    r_peaks : array_like of int
        R-peak sample indices.

    Returns
    -------
    ndarray, shape (n,)
        Residual (atrial activity) in the unit of ``ecg``.
    """
    x = np.nan_to_num(np.asarray(ecg, dtype=np.float64).ravel())
    if x.size < 3 * sampling_rate:
        return np.zeros_like(x)
    band = (0.5, 40.0 if sampling_rate > 90 else 0.45 * sampling_rate)
    y = sosfiltfilt(butter_sos(2, band, "bandpass", sampling_rate), x)
    b, a = round(before_s * sampling_rate), round(after_s * sampling_rate)
    r = np.asarray(r_peaks, dtype=np.int64).ravel()
    r = r[(r - b >= 0) & (r + a <= y.size)]
    if r.size < 3:
        return np.asarray(y, dtype=np.float64)
    beats = np.stack([y[p - b : p + a] for p in r])
    template = np.median(beats, axis=0)
    taper = np.ones(b + a)
    edge = max(round(0.03 * sampling_rate), 1)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    taper[:edge], taper[-edge:] = ramp, ramp[::-1]
    out = y.copy()
    denom = float(template @ template) or 1.0
    core = round(0.05 * sampling_rate)
    for p, beat in zip(r, beats, strict=True):
        scale = float(np.clip(beat @ template / denom, 0.5, 1.5))
        out[p - b : p + a] -= scale * template * taper
        out[max(p - core, 0) : p + core] = 0.0
    return np.asarray(out)


def atrial_spectrum_features(
    residual: npt.ArrayLike, sampling_rate: float, band_hz: tuple[float, float] = (3.0, 12.0)
) -> FloatArray:
    """Dominant atrial frequency (Hz), its spectral concentration and the residual power.

    Parameters
    ----------
    residual : array_like, shape (n,)
        Output of :func:`qrst_cancel`.
    sampling_rate : float
        Hz (>= 2.5 * the band's upper edge).
    band_hz : (float, float)
        Search band for the atrial peak.

    Returns
    -------
    ndarray, shape (3,)
        ``daf_hz``; ``concentration`` = share of the 3-12 Hz power within +-0.5 Hz of the DAF;
        ``log_power`` = log10 of the 3-12 Hz power (unit of the input squared).
    """
    x = np.nan_to_num(np.asarray(residual, dtype=np.float64).ravel())
    if x.size < 2 * sampling_rate or not np.any(x):
        return np.zeros(3)
    nper = min(x.size, round(4 * sampling_rate))
    f, p = welch(x, sampling_rate, nper, max(4096, nper))
    band = (f >= band_hz[0]) & (f <= band_hz[1])
    if not np.any(band):
        return np.zeros(3)
    fb, pb = f[band], p[band]
    daf = float(fb[np.argmax(pb)])
    total = float(pb.sum()) or 1.0
    conc = float(pb[np.abs(fb - daf) <= 0.5].sum()) / total
    return np.array([daf, conc, float(np.log10(total * (f[1] - f[0]) + 1e-12))])


#: Rate (Hz) at which the rhythm model's atrial features are computed, and its window (s).
RHYTHM_RATE_HZ = 128.0
RHYTHM_WINDOW_S = 30.0
#: Input vector of the ``rhythm`` model (:func:`rhythm_window_features`), in order.
RHYTHM_FEATURES: tuple[str, ...] = (
    *RR_IRREGULARITY_FEATURES,
    "daf_hz",
    "atrial_concentration",
    "atrial_log_power",
)


def rhythm_window_features(
    ecg: npt.ArrayLike, sampling_rate: float, r_peaks: npt.ArrayLike
) -> FloatArray:
    """Input of the ``rhythm`` (AF) model for one ~30 s single-lead window, at any device rate.

    RR features come from the R peaks at the device rate (seconds, so rate-free); the window is
    then resampled to :data:`RHYTHM_RATE_HZ` with :func:`common.signals.resample_signal`, the
    peaks are mapped with :func:`common.signals.map_indices`, and the atrial features are
    computed on the QRST-cancelled 128 Hz signal.

    Parameters
    ----------
    ecg : array_like, shape (n,)
        One ECG lead in µV covering the window.
    sampling_rate : float
        Device rate in Hz.
    r_peaks : array_like of int
        R-peak indices inside the window (e.g. from ``common.signals.peaks.ecg_findpeaks`` or the
        streaming ``QRSDetector``), relative to the window start.

    Returns
    -------
    ndarray, shape (len(RHYTHM_FEATURES),)
    """
    x = np.nan_to_num(np.asarray(ecg, dtype=np.float64).ravel())
    r = np.asarray(r_peaks, dtype=np.int64).ravel()
    r = r[(r >= 0) & (r < x.size)]
    rr = rr_irregularity(r, sampling_rate)
    if sampling_rate != RHYTHM_RATE_HZ:
        x = resample_signal(x, sampling_rate, RHYTHM_RATE_HZ)
        r = map_indices(r, sampling_rate, RHYTHM_RATE_HZ)
        r = r[r < x.size]
    atrial = atrial_spectrum_features(qrst_cancel(x, RHYTHM_RATE_HZ, r), RHYTHM_RATE_HZ)
    return np.concatenate([rr, atrial])
