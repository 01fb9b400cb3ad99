"""The ECG pipeline as one call per step, for training code and offline evaluation.

The edge runs the same steps as streams (``EcgFilter`` -> ``QRSDetector`` -> ``RRTracker`` +
``beat_windows`` on a context buffer); these whole-record functions are defined as exactly that
stream run over the full array, so offline numbers are the device's numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.signals.beats import BeatSpec, beat_windows, beats_in_bounds
from common.signals.filters import ecg_clean
from common.signals.rr import rr_features

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BeatInputs:
    """Model inputs of a record's beats under one :class:`BeatSpec`.

    Attributes
    ----------
    windows : ndarray, shape (n_beats, spec.window_len)
        Cleaned, resampled, normalised beat windows (R peak at column ``spec.before_samples``).
    rr : ndarray, shape (n_beats, len(spec.rr_features))
        RR features (seconds or ratios, see :mod:`common.signals.rr`).
    in_bounds : ndarray of bool, shape (n_beats,)
        False for beats whose window needed samples outside the record (edge-padded).
    """

    windows: FloatArray
    rr: FloatArray
    in_bounds: BoolArray


def ecg_beats(
    signal: npt.ArrayLike, sampling_rate: float, r_peaks: npt.ArrayLike, spec: BeatSpec
) -> BeatInputs:
    """Clean a raw record with ``spec.filter`` and build every beat's model input.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        Raw ECG in µV (wfdb reads MIT-BIH in mV: multiply by 1000).
    sampling_rate : float
        Hz.
    r_peaks : array_like of int, shape (n_beats,)
        Strictly increasing R-peak indices (annotations or detector output).
    spec : BeatSpec
        The model's input contract.

    Returns
    -------
    BeatInputs

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=7200)
    >>> out = ecg_beats(x, 360.0, [1000, 1400, 1800], BeatSpec(sampling_rate_hz=128.0))
    >>> out.windows.shape, out.rr.shape, out.in_bounds.tolist()
    ((3, 200), (3, 6), [True, True, True])
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    cleaned = ecg_clean(x, sampling_rate, spec.filter)
    return BeatInputs(
        windows=beat_windows(cleaned, sampling_rate, r, spec),
        rr=rr_features(r, sampling_rate, spec),
        in_bounds=beats_in_bounds(r, x.size, sampling_rate, spec),
    )
