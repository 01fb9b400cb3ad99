"""Zero-phase filtering and Welch spectra in numpy alone (the rhythm features on the edge).

The rhythm scorer runs on the device every window, so it must not import ``scipy.signal``
(~55 MB resident, see :mod:`common.signals.iir`). :func:`sosfiltfilt` and :func:`welch` reproduce
SciPy's defaults used by :mod:`common.signals.rhythm` (odd-extension padding; Hann window, half
overlap, constant detrend, one-sided density) and are tested against SciPy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.signals.iir import sosfilt_zi
from common.signals.sosblock import SosKernel

FloatArray = npt.NDArray[np.float64]


def sosfiltfilt(sos: npt.ArrayLike, x: npt.ArrayLike) -> FloatArray:
    """``scipy.signal.sosfiltfilt(sos, x)`` for a 1-D signal (padtype "odd", default padlen).

    Raises
    ------
    ValueError
        If ``x`` is not longer than the padding, as SciPy does.
    """
    sections = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
    arr = np.asarray(x, dtype=np.float64).ravel()
    ntaps = 2 * len(sections) + 1
    ntaps -= min(int((sections[:, 2] == 0).sum()), int((sections[:, 5] == 0).sum()))
    edge = 3 * ntaps
    if arr.size <= edge:
        raise ValueError(f"the input must be longer than padlen, which is {edge}")
    ext = np.concatenate(
        (2 * arr[0] - arr[edge:0:-1], arr, 2 * arr[-1] - arr[-2 : -(edge + 2) : -1])
    )
    kernel, zi = SosKernel(sections), sosfilt_zi(sections)
    y, _ = kernel.run(ext, zi * ext[0])
    y, _ = kernel.run(y[::-1], zi * y[-1])
    out: FloatArray = y[::-1][edge:-edge]
    return out


def welch(x: npt.ArrayLike, fs: float, nperseg: int, nfft: int) -> tuple[FloatArray, FloatArray]:
    """``scipy.signal.welch(x, fs=fs, nperseg=nperseg, nfft=nfft)`` for a 1-D signal.

    Parameters
    ----------
    x : array_like, shape (n,)
        Signal (unit U), ``n >= nperseg``.
    fs : float
        Hz.
    nperseg, nfft : int
        Segment length and FFT length (``nfft >= nperseg``).

    Returns
    -------
    f : ndarray, shape (nfft // 2 + 1,)
        Frequencies in Hz.
    pxx : ndarray, same shape
        One-sided power spectral density, U**2/Hz, averaged over half-overlapping segments.
    """
    arr = np.asarray(x, dtype=np.float64).ravel()
    step = nperseg - nperseg // 2
    n_seg = (arr.size - nperseg) // step + 1
    idx = np.arange(n_seg)[:, None] * step + np.arange(nperseg)[None, :]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nperseg) / nperseg)  # periodic Hann
    seg = arr[idx]
    seg = (seg - seg.mean(axis=1, keepdims=True)) * win
    pxx = np.abs(np.fft.rfft(seg, n=nfft, axis=1)) ** 2 / (fs * float(win @ win))
    pxx[:, 1 : None if nfft % 2 else -1] *= 2
    freqs = np.asarray(np.fft.rfftfreq(nfft, 1.0 / fs), dtype=np.float64)
    mean = np.asarray(pxx.mean(axis=0), dtype=np.float64)
    return freqs, mean
