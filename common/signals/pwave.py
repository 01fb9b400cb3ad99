"""P-wave presence in the averaged beat of one ECG window (pure numpy).

Atrial fibrillation has no organised atrial activity, so no P wave lines up before the QRS
complexes; sinus rhythm, and sinus rhythm with frequent atrial or ventricular ectopy (the
"other rhythm" recordings a rhythm model most often calls AF), keep one before every sinus beat.
The beats whose preceding RR interval is not premature (at least :data:`NOT_PREMATURE` of the
median, so the ectopic beats do not hide the sinus ones) give the P-wave region of each beat,
:data:`REGION_S` before the R peak; each region is referred to its own last samples (the PR
segment) and their median is the P-wave template. Three numbers describe it (Pearson
correlations and variances are unit-free, amplitudes are in the window's units, e.g. the rhythm
model's "typical QRS = 1"):

- ``p_wave_amplitude``: peak-to-peak of the template;
- ``p_wave_consistency``: mean correlation of the beats' regions with the template;
- ``p_wave_log_snr``: log10 of the template's variance over the beats' mean residual variance.

On the 8,228 CinC 2017 recordings (first 30 s, the rhythm model's input) the median consistency
is 0.73 in normal rhythm, 0.72 in other rhythms and 0.31 in AF (docs/models.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PWAVE_FEATURES: tuple[str, ...] = ("p_wave_amplitude", "p_wave_consistency", "p_wave_log_snr")
REGION_S = (0.30, 0.06)  # the P-wave region: from 300 ms to 60 ms before the R peak
NOT_PREMATURE = 0.85  # an RR interval at least this share of the median is not premature
MIN_BEATS = 3
_BASELINE_SAMPLES = 3  # the region's last samples (PR segment) are its zero
_LOG_FLOOR = 1e-6


def p_wave_features(
    signal: npt.ArrayLike, peaks: npt.ArrayLike, sampling_rate: float
) -> FloatArray:
    """The :data:`PWAVE_FEATURES` of one window.

    Parameters
    ----------
    signal : array_like, shape (n,)
        Band-passed ECG of the window (e.g. ``RhythmInput.signal``), main QRS deflection
        positive.
    peaks : array_like of int, shape (k,)
        R-peak indices into ``signal``, increasing.
    sampling_rate : float
        Hz.

    Returns
    -------
    ndarray, shape (3,)
        All zero with fewer than :data:`MIN_BEATS` beats whose P-wave region lies inside the
        window.

    Examples
    --------
    >>> fs, beat = 128.0, np.zeros(128)
    >>> beat[100:106] = [0.1, 0.2, 0.25, 0.2, 0.1, 0.0]  # a P wave 0.16-0.2 s before the R
    >>> beat[125] = 1.0
    >>> x = np.tile(beat, 10)
    >>> f = p_wave_features(x, np.arange(125, x.size, 128), fs)
    >>> round(float(f[0]), 2), round(float(f[1]), 2)
    (0.25, 1.0)
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    r = np.asarray(peaks, dtype=np.int64).ravel()
    lo, hi = round(REGION_S[0] * sampling_rate), round(REGION_S[1] * sampling_rate)
    out = np.zeros(len(PWAVE_FEATURES))
    inside = r[(r - lo >= 0) & (r - hi <= x.size)]
    if inside.size < MIN_BEATS or hi >= lo:
        return out
    beats = _sinus_beats(r, inside)
    m = np.stack([x[p - lo : p - hi] for p in beats])
    m = m - m[:, -_BASELINE_SAMPLES:].mean(axis=1, keepdims=True)
    template = np.median(m, axis=0)
    out[0] = float(np.ptp(template))
    if template.std() > 0:
        rows = m[m.std(axis=1) > 0]
        if rows.size:
            out[1] = float(np.mean([np.corrcoef(row, template)[0, 1] for row in rows]))
    residual = float(np.mean(np.var(m - template, axis=1)))
    out[2] = float(np.log10(float(np.var(template)) / (residual + _LOG_FLOOR) + _LOG_FLOOR))
    return out


def _sinus_beats(r: npt.NDArray[np.int64], inside: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The beats of ``inside`` whose preceding RR is not premature (all of them if too few)."""
    if r.size < 2:
        return inside
    rr = np.diff(r)
    ok = r[1:][rr >= NOT_PREMATURE * float(np.median(rr))]
    keep = np.intersect1d(ok, inside)
    return keep if keep.size >= MIN_BEATS else inside
