"""Polyphase resampling in numpy alone: ``scipy.signal.firwin`` + ``resample_poly`` equivalents.

The edge resamples each beat window from the device rate to the model rate; importing
``scipy.signal`` for it would cost ~55 MB of resident memory (see :mod:`common.signals.iir`).
:func:`resample_poly` evaluates the up-sample / filter / down-sample chain only at the kept
output samples, through a (n_out, taps) index matrix, with SciPy's exact alignment and zero
padding; tests compare it with SciPy on many ratios and lengths.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> FloatArray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``.

    Parameters
    ----------
    numtaps : int
        Filter length (odd for a linear-phase low-pass).
    cutoff : float
        Corner relative to Nyquist (0 < cutoff < 1).
    beta : float
        Kaiser window shape.

    Returns
    -------
    ndarray, shape (numtaps,)
        Windowed-sinc taps scaled to unit gain at DC.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    out: FloatArray = h / h.sum()
    return out


@lru_cache(maxsize=64)
def _plan(n_in: int, up: int, down: int, fir_len: int) -> tuple[IntArray, IntArray, int]:
    """Input indices and tap indices (into the padded filter) of every kept output sample."""
    half_len = (fir_len - 1) // 2
    n_out = -(-n_in * up // down)
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    h_len = fir_len + n_pre_pad
    # full-rate index of each kept output: t = (j + n_pre_remove) * down; taps h[t - i * up]
    t = (np.arange(n_out, dtype=np.int64) + n_pre_remove) * down
    n_taps = -(-h_len // up)
    i = t[:, None] // up - np.arange(n_taps, dtype=np.int64)[None, :]
    tap = t[:, None] - i * up
    valid = (i >= 0) & (i < n_in) & (tap < h_len)
    # invalid entries read input 0 through a zero tap (index h_len is a zero appended)
    i = np.where(valid, i, 0)
    tap = np.where(valid, tap, h_len)
    i.setflags(write=False)
    tap.setflags(write=False)
    return i, tap, n_pre_pad


def resample_poly(
    x: npt.ArrayLike, up: int, down: int, fir: FloatArray, axis: int = -1
) -> FloatArray:
    """``scipy.signal.resample_poly(x, up, down, axis=axis, window=fir)`` (zero padding).

    Parameters
    ----------
    x : array_like
        Signal (any unit).
    up, down : int
        Rate ratio ``up / down`` (reduced by their gcd, as SciPy does).
    fir : ndarray
        Anti-aliasing FIR at the up-sampled rate (unit DC gain; scaled by ``up`` here).
    axis : int
        Time axis.

    Returns
    -------
    ndarray, float64
        The time axis has ``ceil(n * up / down)`` samples.
    """
    arr = np.asarray(x, dtype=np.float64)
    g = math.gcd(up, down)
    up, down = up // g, down // g
    if up == down == 1:
        return arr.copy()
    moved = np.moveaxis(arr, axis, -1)
    idx, tap, n_pre_pad = _plan(moved.shape[-1], up, down, fir.size)
    h = np.concatenate((np.zeros(n_pre_pad), np.asarray(fir, dtype=np.float64) * up, [0.0]))
    weights = h[tap]  # (n_out, taps)
    out = np.einsum("...jk,jk->...j", moved[..., idx], weights)
    result: FloatArray = np.moveaxis(out, -1, axis)
    return result
