"""MIT-BIH rhythm annotations (wfdb adapter): lead 0 of a record with the rhythm class of every
sample (``aux_note``: ``(N`` -> N, ``(AFIB`` -> AF, anything else incl. ``(AFL`` -> O) and its
AAMI beats, and the class of a window of it (:func:`window_class`), for the rhythm banks.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.types import microvolts_per
from models.data.mitdb import aami_beats


def rhythm_of(aux: str) -> int:
    """Class index of a MIT-BIH rhythm annotation such as ``(AFIB``."""
    name = aux.strip("\x00 ").lstrip("(")
    return {"N": 0, "AFIB": 1}.get(name, 2)


class MitdbRhythm(NamedTuple):
    """Lead 0 of a MIT-BIH record with its rhythm and beat annotations."""

    x_uv: npt.NDArray[np.float64]  # (n_samples,) µV
    fs: float  # Hz
    rhythm: npt.NDArray[np.int64]  # (n_samples,) class index (N 0, AF 1, O 2) of every sample
    beat_samples: npt.NDArray[np.int64]  # (n_beats,) annotated beats with an AAMI class
    beat_labels: npt.NDArray[np.int64]  # (n_beats,) AAMI class index (N 0, S 1, V 2, F 3, Q 4)


def read_mitdb(folder: Path, name: str) -> MitdbRhythm:
    """Lead 0 in µV at the record's rate with its rhythm and beat annotations."""
    import wfdb

    base = folder / name
    if not base.with_suffix(".hea").is_file():
        raise DataNotFoundError(f"MIT-BIH record {name!r}", str(folder))
    try:
        rec = wfdb.rdrecord(str(base), channels=[0])
        ann = wfdb.rdann(str(base), "atr")
    except Exception as exc:  # wfdb raises assorted errors on corrupt files
        raise CorruptInputError(f"cannot read MIT-BIH record {base}: {exc}") from exc
    if rec.p_signal is None:
        raise CorruptInputError(f"record {base} has no physical signal")
    scale = microvolts_per((rec.units or ["mV"])[0])
    if scale is None:
        raise CorruptInputError(f"record {base}: lead 0 is in {rec.units[0]!r}, not a voltage")
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64) * scale
    rhythm = np.full(x.size, 2, dtype=np.int64)
    changes = [
        (int(s), rhythm_of(a))
        for s, a in zip(ann.sample, ann.aux_note, strict=True)
        if a.startswith("(")
    ]
    for (s, label), nxt in zip(changes, [*changes[1:], (x.size, 0)], strict=True):
        rhythm[max(s, 0) : nxt[0]] = label
    return MitdbRhythm(x, float(rec.fs), rhythm, *aami_beats(ann.sample, ann.symbol, x.size, name))


def window_class(rec: MitdbRhythm, start: int, stop: int, ectopy_as_o: float | None = None) -> int:
    """Class of a window of ``rec``: its majority rhythm (N 0, AF 1, O 2).

    Parameters
    ----------
    rec : MitdbRhythm
        The record.
    start, stop : int
        The window, ``[start, stop)`` in samples of the record.
    ectopy_as_o : float, optional
        Development option (``Recipe.mitdb_ectopy_as_o``): a window in sinus rhythm whose
        annotated beats are at least this share (0-1) AAMI S, V or F is labelled O, as CinC
        2017's annotators called sinus rhythm with frequent ectopy "other rhythm".

    Returns
    -------
    int
        The class index.
    """
    label = int(np.bincount(rec.rhythm[start:stop], minlength=3).argmax())
    if label != 0 or ectopy_as_o is None:
        return label
    inside = (rec.beat_samples >= start) & (rec.beat_samples < stop)
    beats = rec.beat_labels[inside]
    ectopic = np.isin(beats, (1, 2, 3)).sum()
    return 2 if beats.size and ectopic >= ectopy_as_o * beats.size else 0
