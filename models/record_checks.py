"""Input checks of a scored recording (pure numpy): flat lines, clipping, annotations that do
not belong to the signal.

A record that fails them is flagged (and, when its figures would be wrong, left out of the
scores with the reason) by ``models.record_eval``; nothing here raises on bad samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FLAT_UV = 10.0  # peak-to-peak below this over a 1-s window is a flat line (µV)
FLAT_EXCLUDE_SHARE = 0.5  # a record flat over more than this share is not scored
CLIP_RUN = 4  # samples in a row at the record's extreme value = saturation
CLIP_FLAG_SHARE = 0.001  # share of clipped samples that is worth a flag
MISMATCH_BELOW = 0.5  # fewer reference beats than this share found: annotations of another signal
SCATTER_MS = 100.0  # matched offsets this scattered (IQR) with some beats not found: the same
SCATTER_SE_BELOW = 0.9
DETECTION_FLAG_BELOW = 0.9  # detection Se or +P below this is flagged


def _runs_at(mask: npt.NDArray[np.bool_], min_run: int) -> int:
    """Samples of ``mask`` that lie in runs of at least ``min_run`` True values."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return int(lengths[lengths >= min_run].sum())


def flat_share(signal: npt.NDArray[np.float64], fs: float) -> float:
    """Share of the 1-s windows whose peak-to-peak is below :data:`FLAT_UV` (µV)."""
    step = max(1, round(fs))
    n = signal.size // step
    if n == 0:
        return 1.0 if signal.size and np.ptp(signal) < FLAT_UV else 0.0
    blocks = signal[: n * step].reshape(n, step)
    return float(np.mean(np.ptp(blocks, axis=1) < FLAT_UV))


def clipped_share(signal: npt.NDArray[np.float64]) -> float:
    """Share of samples in runs of :data:`CLIP_RUN` or more at the record's max or min."""
    if signal.size == 0 or float(np.ptp(signal)) == 0.0:
        return 0.0
    top = _runs_at(signal >= signal.max(), CLIP_RUN)
    bottom = _runs_at(signal <= signal.min(), CLIP_RUN)
    return (top + bottom) / signal.size


def signal_flags(signal: npt.NDArray[np.float64], fs: float) -> dict[str, Any]:
    """Quality flags of one lead (µV): ``flat_line`` / ``clipping`` shares when present."""
    flags: dict[str, Any] = {}
    flat = flat_share(signal, fs)
    if flat > 0:
        flags["flat_line"] = round(flat, 4)
    clipped = clipped_share(signal)
    if clipped >= CLIP_FLAG_SHARE:
        flags["clipping"] = round(clipped, 4)
    return flags


def annotation_problem(reference: npt.NDArray[np.int64], n_samples: int, fs: float) -> str:
    """Why beat annotations cannot belong to a signal of ``n_samples`` ("" if they can)."""
    if reference.size == 0:
        return "no reference beat annotations"
    outside = int(np.sum((reference < 0) | (reference >= n_samples)))
    if outside:
        return (
            f"annotations do not match the signal: {outside} of {reference.size} reference "
            f"beats lie outside its {n_samples / fs:.1f} s"
        )
    return ""


def detection_problem(se: float, offsets_ms: npt.NDArray[np.float64]) -> str:
    """Why the detected beats show that the annotations belong to another signal ("" if not).

    ``se``: share of the reference beats with a detection within the tolerance;
    ``offsets_ms``: detected minus reference position of the matched pairs. Real annotations
    are found (Se >= 0.71 on every MIT-BIH lead) at a steady offset (IQR <= 67 ms, 131 ms on a
    paced V2 lead found at Se 0.996); another record's annotations match by chance, at
    offsets spread over the whole tolerance.
    """
    iqr = float(np.subtract(*np.percentile(offsets_ms, [75, 25]))) if offsets_ms.size else 0.0
    if se < MISMATCH_BELOW or (iqr > SCATTER_MS and se < SCATTER_SE_BELOW):
        return (
            f"annotations do not match the signal: {100 * se:.0f} % of the reference beats "
            f"have a detected beat within the tolerance, at offsets scattered over {iqr:.0f} ms"
        )
    return ""
