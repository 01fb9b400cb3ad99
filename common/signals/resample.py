"""Sampling-rate conversion and index mapping between rates.

Devices record ECG at many rates (128 Hz Polar H10 exports at 130 Hz, MIT-BIH at 360 Hz, Holter
recorders at 250-500 Hz); models run at one fixed rate recorded in their card. Rates are brought
together by polyphase resampling (:func:`scipy.signal.resample_poly`) with the rate ratio
approximated by a small fraction ``up/down``: exact for integer rates (360 -> 128 Hz is 16/45),
within ``1/max_denominator`` relative error otherwise.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from common.signals.polyphase import kaiser_lowpass, resample_poly

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _check_rate(name: str, fs: float) -> None:
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"{name} must be a positive finite rate in Hz, got {fs!r}")


def resampling_ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """The integer factors ``(up, down)`` with ``up / down ~= fs_out / fs_in``.

    Parameters
    ----------
    fs_in, fs_out : float
        Input and output sampling rates in Hz.
    max_denominator : int
        Largest ``down`` allowed; bounds the polyphase filter length.

    Returns
    -------
    (up, down) : tuple of int
        Coprime factors. ``(1, 1)`` when the rates are equal.

    Examples
    --------
    >>> resampling_ratio(360, 128)
    (16, 45)
    >>> resampling_ratio(130, 128)
    (64, 65)
    """
    _check_rate("fs_in", fs_in)
    _check_rate("fs_out", fs_out)
    ratio = (Fraction(fs_out) / Fraction(fs_in)).limit_denominator(max_denominator)
    if ratio <= 0:
        raise ValueError(
            f"cannot approximate {fs_out}/{fs_in} with denominator <= {max_denominator}"
        )
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=32)
def _polyphase_fir(up: int, down: int) -> FloatArray:
    """The anti-aliasing FIR ``resample_poly`` designs by default, computed once per ratio.

    Designing it (``firwin``) costs ~150 µs, more than resampling one beat; passing the same
    coefficients as ``window`` gives bit-identical output.
    """
    max_rate = max(up, down)
    fir = kaiser_lowpass(2 * 10 * max_rate + 1, 1.0 / max_rate, 5.0)
    fir.setflags(write=False)
    return fir


def resample_signal(
    x: npt.ArrayLike,
    fs_in: float,
    fs_out: float,
    *,
    axis: int = -1,
    max_denominator: int = 1000,
) -> FloatArray:
    """Resample ``x`` from ``fs_in`` to ``fs_out`` with a polyphase anti-aliasing filter.

    Sample ``k`` of the output is at time ``k / fs_out`` seconds when sample 0 of the input is at
    time 0 (no delay is introduced: the polyphase FIR is zero-phase). Edges are zero-padded by
    :func:`scipy.signal.resample_poly`, so the first and last ~10 input samples are attenuated;
    callers that need exact values there (beat windows) cut a margin around the region of
    interest first (see :mod:`common.signals.beats`).

    Parameters
    ----------
    x : array_like, shape (..., n_samples, ...)
        Signal in any unit (float64 output).
    fs_in, fs_out : float
        Sampling rates in Hz.
    axis : int
        Time axis.
    max_denominator : int
        See :func:`resampling_ratio`.

    Returns
    -------
    ndarray, float64
        Resampled signal; the time axis has ``ceil(n * up / down)`` samples.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(3600) / 360.0
    >>> y = resample_signal(np.sin(2 * np.pi * 5 * t), 360, 128)
    >>> y.shape
    (1280,)
    """
    arr = np.asarray(x, dtype=np.float64)
    up, down = resampling_ratio(fs_in, fs_out, max_denominator)
    if up == down:
        return arr.copy()
    if arr.shape[axis] == 0:
        shape = list(arr.shape)
        shape[axis] = 0
        return np.zeros(shape, dtype=np.float64)
    out = resample_poly(arr, up, down, _polyphase_fir(up, down), axis=axis)
    return out


def map_indices(
    indices: npt.ArrayLike, fs_in: float, fs_out: float, *, max_denominator: int = 1000
) -> IntArray:
    """Map sample indices at ``fs_in`` to the nearest sample indices at ``fs_out``.

    Uses the same rational ratio as :func:`resample_signal`, so an R peak at input index ``i``
    lands on output index ``round(i * up / down)`` of the resampled signal.

    Parameters
    ----------
    indices : array_like of int, shape (n,)
        Sample indices at ``fs_in``.
    fs_in, fs_out : float
        Sampling rates in Hz.

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> map_indices([0, 45, 370], 360, 128).tolist()
    [0, 16, 132]
    """
    idx = np.asarray(indices, dtype=np.int64)
    up, down = resampling_ratio(fs_in, fs_out, max_denominator)
    # Integer round-half-up: exact for any index magnitude, unlike float multiplication.
    mapped: IntArray = (idx * up * 2 + down) // (2 * down)
    return mapped
