"""Butterworth design and second-order-section filtering in numpy alone (no ``scipy.signal``).

The edge agent must stay under 150 MB of resident memory; ``import scipy.signal`` alone costs
~55 MB (it pulls in ``scipy.stats``, ``interpolate``, ``sparse``...). The few pieces the
deployment path needs are reimplemented here and tested against SciPy
(``tests/common/signals/test_iir.py``):

- :func:`butter_sos` follows ``scipy.signal.butter(..., output="sos")`` step by step (analogue
  prototype, frequency transform, bilinear transform, ``zpk2sos`` "nearest" pairing). Designs
  with a real pole (odd low/high-pass orders) fall back to SciPy, imported lazily.
- :func:`sosfilt_zi` and :func:`sos_group_delay` are the closed forms behind the SciPy ones.
- :class:`SosKernel` runs ``sosfilt`` exactly in block state-space form: per section, the output
  of a block is the forced response (a Toeplitz matrix of the impulse response, one BLAS
  product for all blocks) plus the zero-input response of the state, and only the 2-element
  state is carried from block to block in Python.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_TOL = 100 * np.finfo(np.float64).eps


def _prototype_digital(
    order: int, wn: FloatArray, btype: str
) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128], float]:
    """Digital zeros, poles and gain of ``butter`` (SciPy's ``iirfilter`` with fs=2)."""
    warped = 4.0 * np.tan(np.pi * wn / 2.0)
    p = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    z = np.zeros(0, dtype=np.complex128)
    k = 1.0
    if btype == "lowpass":
        z, p, k = z * warped[0], p * warped[0], k * float(warped[0]) ** order
    elif btype == "highpass":
        k = k * float(np.real(np.prod(-z) / np.prod(-p)))
        z, p = np.append(warped[0] / z, np.zeros(order)), warped[0] / p
    else:  # bandpass
        bw, wo = warped[1] - warped[0], np.sqrt(warped[0] * warped[1])
        p_lp = p * bw / 2
        root = np.sqrt(p_lp**2 - wo**2)
        p = np.concatenate((p_lp + root, p_lp - root))
        z, k = np.zeros(order, dtype=np.complex128), k * float(bw) ** order
    degree = len(p) - len(z)
    k = k * float(np.real(np.prod(4.0 - z) / np.prod(4.0 - p)))
    z_d = np.append((4.0 + z) / (4.0 - z), -np.ones(degree))
    p_d = (4.0 + p) / (4.0 - p)
    return z_d.astype(np.complex128), p_d.astype(np.complex128), k


def _pair_sections(zeros: FloatArray, poles: npt.NDArray[np.complex128], k: float) -> FloatArray:
    """``zpk2sos(pairing="nearest")`` for real zeros and complex-conjugate poles only."""
    zeros = np.sort(zeros)
    p = poles[np.lexsort((abs(poles.imag), poles.real))]
    zp, zn = p[p.imag > 0], p[p.imag < 0]
    p = (zp + zn.conj()) / 2  # SciPy averages the two halves of each pair
    sos = np.zeros((len(p), 6))
    for si in range(len(p) - 1, -1, -1):
        i = int(np.argmin(np.abs(1 - np.abs(p))))  # the pole nearest the unit circle goes last
        p1, p = p[i], np.delete(p, i)
        pair = []
        for _ in range(2):
            j = int(np.argsort(np.abs(zeros - p1))[0])
            pair.append(zeros[j])
            zeros = np.delete(zeros, j)
        sos[si, :3] = np.real(np.poly(pair))
        sos[si, 3:] = np.real(np.poly([p1, p1.conj()]))
    sos[0, :3] *= k
    return sos


def butter_sos(
    order: int, cutoff_hz: float | tuple[float, float], btype: str, fs: float
) -> FloatArray:
    """``scipy.signal.butter(order, cutoff_hz, btype, fs=fs, output="sos")`` in numpy.

    Parameters
    ----------
    order : int
        Butterworth order (per band edge for a band-pass).
    cutoff_hz : float or (float, float)
        Corner(s) in Hz, below ``fs / 2``.
    btype : {"lowpass", "highpass", "bandpass"}
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    ndarray, shape (n_sections, 6)
    """
    wn = 2.0 * np.atleast_1d(np.asarray(cutoff_hz, dtype=np.float64)) / fs
    if btype not in ("lowpass", "highpass", "bandpass") or wn.size != (
        2 if btype == "bandpass" else 1
    ):
        raise ValueError(f"unsupported Butterworth design {btype!r} with cutoff {cutoff_hz!r}")
    z, p, k = _prototype_digital(order, wn, btype)
    if np.any(np.abs(p.imag) <= _TOL * np.abs(p)) or np.any(np.abs(z.imag) > _TOL):
        from scipy import signal as sps  # rare designs (real poles): not on the edge path

        _LOGGER.debug("butter order %d %s has a real pole; designing with SciPy", order, btype)
        sos: FloatArray = sps.butter(order, cutoff_hz, btype=btype, fs=fs, output="sos")
        return sos
    return _pair_sections(z.real, p, k)


def _state_space(section: FloatArray) -> tuple[FloatArray, FloatArray, float]:
    """Transition matrix A, input vector and feed-through of one section in transposed DF-II."""
    b = section[:3] / section[3]
    a = section[3:] / section[3]
    trans = np.array([[-a[1], 1.0], [-a[2], 0.0]])
    inp = np.array([b[1] - a[1] * b[0], b[2] - a[2] * b[0]])
    return trans, inp, float(b[0])


def sosfilt_zi(sos: npt.ArrayLike) -> FloatArray:
    """Per-section state of the step-response steady state, as ``scipy.signal.sosfilt_zi``.

    Returns
    -------
    ndarray, shape (n_sections, 2)
        Multiply by the first sample to start a stream without a start-up transient.
    """
    sections = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
    zi = np.zeros((len(sections), 2))
    scale = 1.0
    for s, section in enumerate(sections):
        trans, inp, _ = _state_space(section)
        zi[s] = scale * np.linalg.solve(np.eye(2) - trans, inp)
        scale *= section[:3].sum() / section[3:].sum()
    return zi


def sos_group_delay(sos: npt.ArrayLike, freq_hz: float, fs: float) -> float:
    """Group delay in samples at ``freq_hz`` (``group_delay(sos2tf(sos), w=[freq_hz], fs=fs)``)."""
    sections = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
    b: FloatArray = np.ones(1)
    a: FloatArray = np.ones(1)
    for section in sections:
        b = np.asarray(np.polymul(b, section[:3]), dtype=np.float64)
        a = np.asarray(np.polymul(a, section[3:]), dtype=np.float64)
    c = np.convolve(b, a[::-1])
    z = np.exp(-2j * np.pi * freq_hz / fs)
    num = np.polyval((c * np.arange(c.size))[::-1], z)
    den = np.polyval(c[::-1], z)
    return float(np.real(num / den) - a.size + 1)
