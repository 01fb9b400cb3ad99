"""Reference beat labels from replay annotations (pure): MIT-BIH symbols -> AAMI classes.

A detected beat gets the class of the nearest annotated beat within the EC57 matching window
(150 ms); unmatched detections and non-beat annotations give None (no training example).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# ANSI/AAMI EC57 grouping of the MIT-BIH beat symbols (de Chazal 2004, table I).
AAMI: dict[str, str] = {
    **dict.fromkeys(["N", "L", "R", "e", "j"], "N"),
    **dict.fromkeys(["A", "a", "J", "S"], "S"),
    **dict.fromkeys(["V", "E"], "V"),
    "F": "F",
    **dict.fromkeys(["/", "f", "Q"], "Q"),
}


class AnnotationLabeler:
    """Labels detected beats from annotated ones.

    Parameters
    ----------
    samples : array_like of int, shape (n,)
        Annotation positions (stream sample indices).
    symbols : sequence of str, shape (n,)
        MIT-BIH annotation symbols; non-beat symbols are ignored.
    sampling_rate : float
        Hz.
    tolerance_s : float
        Largest distance between a detection and its annotation, s.
    """

    def __init__(
        self,
        samples: npt.ArrayLike,
        symbols: Sequence[str],
        sampling_rate: float,
        tolerance_s: float = 0.15,
    ) -> None:
        pos = np.asarray(samples, dtype=np.int64).reshape(-1)
        if pos.size != len(symbols):
            raise ValueError("samples and symbols differ in length")
        keep = np.array([s in AAMI for s in symbols], dtype=bool)
        order = np.argsort(pos[keep], kind="stable")
        self._pos = pos[keep][order]
        self._cls = [AAMI[s] for s, k in zip(symbols, keep, strict=True) if k]
        self._cls = [self._cls[i] for i in order]
        self._tol = int(round(tolerance_s * sampling_rate))

    def __len__(self) -> int:
        return int(self._pos.size)

    def labels_for(self, samples: list[int]) -> list[str | None]:
        """AAMI class of the nearest annotated beat within tolerance, per detected sample."""
        if not self._pos.size:
            return [None] * len(samples)
        q = np.asarray(samples, dtype=np.int64)
        i = (
            np.clip(np.searchsorted(self._pos, q), 1, self._pos.size - 1)
            if self._pos.size > 1
            else np.zeros(q.size, np.int64)
        )
        out: list[str | None] = []
        for k, s in enumerate(q.tolist()):
            cands = [j for j in (int(i[k]) - 1, int(i[k])) if 0 <= j < self._pos.size]
            j = min(cands, key=lambda c: abs(int(self._pos[c]) - s))
            out.append(self._cls[j] if abs(int(self._pos[j]) - s) <= self._tol else None)
        return out
