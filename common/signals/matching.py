"""Beat-by-beat comparison of detected R peaks with reference annotations (EC57 style)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PeakMatch:
    """Result of :func:`match_peaks`.

    Attributes
    ----------
    tp, fp, fn : int
        Matched references, unmatched detections, unmatched references.
    matched_detected, matched_reference : ndarray of int64, shape (tp,)
        Indices (into the input arrays) of each matched pair.
    """

    tp: int
    fp: int
    fn: int
    matched_detected: IntArray
    matched_reference: IntArray

    @property
    def sensitivity(self) -> float:
        """Se = TP / (TP + FN); NaN without references."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def positive_predictivity(self) -> float:
        """+P = TP / (TP + FP); NaN without detections."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")


def match_peaks(
    detected: npt.ArrayLike, reference: npt.ArrayLike, tolerance_samples: int
) -> PeakMatch:
    """Pair detections with reference beats one to one within a tolerance.

    Both sequences are walked in time order; a reference beat is paired with the nearest
    detection within ``tolerance_samples`` that comes after the previous pair, so each detection
    and each reference is used at most once (as ANSI/AAMI EC57 ``bxb`` does; 150 ms at the
    record's rate is the usual tolerance, shorter than any physiological RR interval, so the
    windows of neighbouring beats do not compete).

    Parameters
    ----------
    detected, reference : array_like of int, shape (n,), (m,)
        Sample indices (sorted here; duplicates count separately).
    tolerance_samples : int
        Largest allowed |detected - reference| for a match, in samples.

    Returns
    -------
    PeakMatch

    Examples
    --------
    >>> m = match_peaks([100, 460, 800, 1300], [102, 455, 1000, 1290], 54)
    >>> (m.tp, m.fp, m.fn)
    (3, 1, 1)
    """
    if tolerance_samples < 0:
        raise ValueError("tolerance_samples must be >= 0")
    det_order = np.argsort(np.asarray(detected, dtype=np.int64).reshape(-1), kind="stable")
    ref_order = np.argsort(np.asarray(reference, dtype=np.int64).reshape(-1), kind="stable")
    det = np.asarray(detected, dtype=np.int64).reshape(-1)[det_order]
    ref = np.asarray(reference, dtype=np.int64).reshape(-1)[ref_order]
    # Candidate window of each reference: detections in [ref - tol, ref + tol].
    lo = np.searchsorted(det, ref - tolerance_samples, side="left")
    hi = np.searchsorted(det, ref + tolerance_samples, side="right")
    pairs_d: list[int] = []
    pairs_r: list[int] = []
    next_free = 0
    det_list = det.tolist()
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        start = max(a, next_free)
        if start >= b:
            continue
        r = int(ref[i])
        best = min(range(start, b), key=lambda j: abs(det_list[j] - r))
        pairs_d.append(best)
        pairs_r.append(i)
        next_free = best + 1
    tp = len(pairs_d)
    return PeakMatch(
        tp=tp,
        fp=int(det.size - tp),
        fn=int(ref.size - tp),
        matched_detected=det_order[np.array(pairs_d, dtype=np.int64)],
        matched_reference=ref_order[np.array(pairs_r, dtype=np.int64)],
    )
