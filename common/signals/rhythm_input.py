"""Input of the ``rhythm`` v2 model (N / AF / O / noisy) for one ECG recording or window.

One function, :func:`prepare_rhythm_input`, turns any single-lead ECG of 9 s or more, at any
rate and either polarity, into what the model reads; training (``models.rhythm_data``), the
evaluator (``medchain evaluate --task rhythm --records``), the edge's rhythm monitor and its
30 s spot check all call it, so the numbers of one are the numbers of the others. Steps:

1. non-finite samples -> 0 (counted); the window resampled to :data:`INPUT_FS_HZ` (128 Hz) with
   :func:`common.signals.resample_signal` (polyphase);
2. R peaks detected on it with :func:`common.signals.peaks.ecg_findpeaks` (the edge's detector);
3. band-pass 0.5-40 Hz, Butterworth order 2, zero-phase (:func:`common.signals.spectral.sosfiltfilt`);
4. polarity: multiplied by the sign of the median band-passed value at the R peaks (the detector
   places the peak on the largest QRS deflection, whichever its sign), so the main deflection
   is positive whichever way the electrodes were held;
5. scale: divided by the median |value| at the R peaks (a typical QRS becomes 1; with fewer than
   3 peaks by 3 standard deviations), clipped to +-:data:`CLIP`;
6. features: the 15 :data:`common.signals.rhythm.RHYTHM_FEATURES` of the raw 128 Hz window and
   its peaks (RR irregularity in s, atrial activity after QRST cancellation), or the
   ``feature_names`` a model's card lists among :data:`KNOWN_FEATURES` (those and the three
   :data:`common.signals.pwave.PWAVE_FEATURES` of the prepared signal).

Quality flags (:data:`QUALITY_FLAGS`) say what is wrong with an input before any model runs.
Longer recordings are cut into windows of at most :data:`WINDOW_S` by :func:`window_starts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.signals.iir import butter_sos
from common.signals.peaks import ecg_findpeaks
from common.signals.pwave import PWAVE_FEATURES, p_wave_features
from common.signals.resample import resample_signal
from common.signals.rhythm import RHYTHM_FEATURES, rhythm_window_features
from common.signals.spectral import sosfiltfilt

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

INPUT_FS_HZ = 128.0  # the model's rate
BAND_HZ = (0.5, 40.0)  # zero-phase band-pass at INPUT_FS_HZ, order 2
CLIP = 3.0  # |normalised sample| bound (a typical QRS is 1)
MIN_S = 9.0  # shortest input the model decides on (CinC 2017's shortest recording)
WINDOW_S = 30.0  # longest window; longer recordings are windowed (window_starts)
HOP_S = 10.0  # step between windows of a longer recording
FLAT_UV = 10.0  # band-passed standard deviation below which the input is a flat line, µV
FLAT_SHARE = 0.5  # or share of successive raw samples that repeat exactly
CLIP_SHARE = 0.005  # share of samples in runs (>= 3) at the recording's extreme values
MIN_PEAKS = 3
QUALITY_FLAGS: tuple[str, ...] = ("too_short", "flat", "clipped", "few_beats", "non_finite")
FEATURE_NAMES: tuple[str, ...] = RHYTHM_FEATURES  # the shipped v2 model's features
KNOWN_FEATURES: tuple[str, ...] = RHYTHM_FEATURES + PWAVE_FEATURES


@dataclass(frozen=True)
class RhythmInput:
    """Model-ready view of one window.

    Attributes
    ----------
    signal : ndarray, shape (L,), float32
        Band-passed, polarity-corrected, scaled, clipped ECG at :data:`INPUT_FS_HZ`.
    features : ndarray, shape (len(FEATURE_NAMES),), float32
    peaks : ndarray, shape (n_beats,), int64
        R peaks at :data:`INPUT_FS_HZ`.
    polarity : int
        +1, or -1 when the window was inverted.
    scale_uv : float
        Divisor applied (µV per unit of ``signal``).
    duration_s : float
        Length of the input, s.
    quality : tuple of str
        Flags among :data:`QUALITY_FLAGS` (empty = nothing found wrong).
    """

    signal: npt.NDArray[np.float32]
    features: npt.NDArray[np.float32]
    peaks: npt.NDArray[np.int64]
    polarity: int
    scale_uv: float
    duration_s: float
    quality: tuple[str, ...]

    @property
    def decidable(self) -> bool:
        """False when no model should decide on it (too short or a flat line)."""
        return not ({"too_short", "flat"} & set(self.quality))


def quality_flags(ecg_uv: npt.ArrayLike, sampling_rate: float) -> tuple[str, ...]:
    """What is wrong with a raw recording (before resampling), in :data:`QUALITY_FLAGS` order.

    ``too_short`` under :data:`MIN_S`; ``flat`` when more than :data:`FLAT_SHARE` of successive
    samples repeat exactly or the recording spans under :data:`FLAT_UV`; ``clipped`` when more
    than :data:`CLIP_SHARE` of the samples sit in runs of 3 or more at the recording's maximum or
    minimum (an amplifier or ADC at its rail); ``non_finite`` when samples are NaN or infinite.
    ``few_beats`` needs the detector and is added by :func:`prepare_rhythm_input`.
    """
    x = np.asarray(ecg_uv, dtype=np.float64).ravel()
    flags: list[str] = []
    if x.size < MIN_S * sampling_rate:
        flags.append("too_short")
    finite = np.isfinite(x)
    v = x[finite]
    if v.size < 2 or np.mean(np.diff(v) == 0) > FLAT_SHARE or np.ptp(v) < FLAT_UV:
        flags.append("flat")
    elif _rail_share(v) > CLIP_SHARE:
        flags.append("clipped")
    if not finite.all():
        flags.append("non_finite")
    return tuple(flags)


def _rail_share(x: FloatArray) -> float:
    """Share of samples in runs of >= 3 equal samples at the maximum or the minimum."""
    at_rail = (x == x.max()) | (x == x.min())
    padded = np.concatenate(([0], at_rail.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    runs = edges[1::2] - edges[::2]
    return float(runs[runs >= 3].sum()) / x.size


def prepare_rhythm_input(
    ecg_uv: npt.ArrayLike,
    sampling_rate: float,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
) -> RhythmInput:
    """The model input of one window (module docstring, steps 1-6).

    Parameters
    ----------
    ecg_uv : array_like, shape (n,)
        One ECG lead in µV, any polarity.
    sampling_rate : float
        Hz.
    feature_names : tuple of str
        The features to compute, in order (names of :data:`KNOWN_FEATURES`).

    Returns
    -------
    RhythmInput
        Always returned, also for bad input (then ``quality`` says why); a window too short
        for the band-pass gives a zero ``signal``.
    """
    if not np.isfinite(sampling_rate) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
    if unknown := [n for n in feature_names if n not in KNOWN_FEATURES]:
        raise ValueError(f"unknown rhythm feature(s) {unknown}; known: {KNOWN_FEATURES}")
    raw = np.asarray(ecg_uv, dtype=np.float64).ravel()
    flags = list(quality_flags(raw, sampling_rate))
    x = resample_signal(
        np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0), sampling_rate, INPUT_FS_HZ
    )
    peaks = (
        np.asarray(ecg_findpeaks(x, INPUT_FS_HZ), dtype=np.int64)
        if x.size > 32
        else np.zeros(0, np.int64)
    )
    if peaks.size < MIN_PEAKS:
        flags.append("few_beats")
    try:
        y = sosfiltfilt(butter_sos(2, BAND_HZ, "bandpass", INPUT_FS_HZ), x)
    except ValueError:  # shorter than the filter's padding (< ~0.1 s): nothing to decide on
        y = np.zeros_like(x)
    polarity, scale = _polarity_and_scale(y, peaks)
    signal = np.clip(y * (polarity / scale), -CLIP, CLIP).astype(np.float32)
    features = _features(x, signal, peaks, feature_names)
    order = [f for f in QUALITY_FLAGS if f in flags]
    return RhythmInput(
        signal, features, peaks, polarity, scale, raw.size / sampling_rate, tuple(order)
    )


def _features(
    x: FloatArray,
    signal: npt.NDArray[np.float32],
    peaks: npt.NDArray[np.int64],
    names: tuple[str, ...],
) -> npt.NDArray[np.float32]:
    """The ``names`` features of the raw 128 Hz window ``x`` and its prepared ``signal``."""
    values = dict(zip(RHYTHM_FEATURES, rhythm_window_features(x, INPUT_FS_HZ, peaks), strict=True))
    if set(names) & set(PWAVE_FEATURES):
        values |= zip(PWAVE_FEATURES, p_wave_features(signal, peaks, INPUT_FS_HZ), strict=True)
    return np.array([values[n] for n in names], dtype=np.float32)


def _polarity_and_scale(y: FloatArray, peaks: npt.NDArray[np.int64]) -> tuple[int, float]:
    """Sign of the median band-passed value at the R peaks and the median |value| there."""
    if peaks.size >= MIN_PEAKS:
        at = y[peaks]
        polarity = -1 if float(np.median(at)) < 0 else 1
        scale = float(np.median(np.abs(at)))
    else:
        polarity, scale = 1, 3.0 * float(np.std(y)) if y.size else 1.0
    return polarity, scale if scale > 1e-6 else 1.0


def window_starts(
    n_samples: int, sampling_rate: float, window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges covering a recording: itself when at most ``window_s``
    long, else windows of ``window_s`` every ``hop_s`` with the last one ending at the end.

    Examples
    --------
    >>> window_starts(45 * 300, 300.0)
    [(0, 9000), (3000, 12000), (4500, 13500)]
    >>> window_starts(20 * 300, 300.0)
    [(0, 6000)]
    """
    size, hop = round(window_s * sampling_rate), max(1, round(hop_s * sampling_rate))
    if n_samples <= size:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - size + 1, hop))
    if starts[-1] != n_samples - size:
        starts.append(n_samples - size)
    return [(s, s + size) for s in starts]
