"""MIT-BIH Arrhythmia Database reader (wfdb adapter): one lead in µV plus beat annotations.

AAMI EC57 mapping of the MIT-BIH beat symbols (de Chazal et al. 2004):
N = {N, L, R, e, j}, S = {A, a, J, S}, V = {V, E}, F = {F}, Q = {/, f, Q}. Non-beat annotations
(rhythm changes ``+``, noise ``~``, ``|``, ``!``...) are ignored. The standard inter-patient split
is :data:`DS1` (train) / :data:`DS2` (test); the paced records 102, 104, 107 and 217 are in
neither.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.types import microvolts_per

_LOGGER = logging.getLogger(__name__)

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
AAMI_MAP: dict[str, int] = {
    **dict.fromkeys("NLRej", 0),
    **dict.fromkeys("AaJS", 1),
    **dict.fromkeys("VE", 2),
    "F": 3,
    **dict.fromkeys("/fQ", 4),
}
DS1 = (
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230"
).split()
DS2 = (
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234"
).split()
PACED = ("102", "104", "107", "217")
ALL_RECORDS = tuple(sorted(DS1 + DS2 + list(PACED)))


@dataclass(frozen=True)
class MitdbRecord:
    """One lead of one record with its beat annotations.

    Attributes
    ----------
    name : str
        Record name (``"100"``).
    fs : float
        Sampling rate, Hz (360 for MIT-BIH).
    signal_uv : ndarray, shape (n_samples,), float64
        The lead in µV.
    lead : str
        Lead name from the header (``"MLII"``).
    beat_samples : ndarray, shape (n_beats,), int64
        Annotated R-peak sample indices of the beats (AAMI-mappable symbols only).
    beat_labels : ndarray, shape (n_beats,), int64
        AAMI class index (``AAMI_CLASSES``) of each beat.
    """

    name: str
    fs: float
    signal_uv: npt.NDArray[np.float64]
    lead: str
    beat_samples: npt.NDArray[np.int64]
    beat_labels: npt.NDArray[np.int64]


def read_record(folder: Path, name: str, lead: str = "MLII") -> MitdbRecord:
    """Read one record's ``lead`` and its ``atr`` beat annotations.

    Raises
    ------
    DataNotFoundError
        If the record's files are missing or it has no such lead.
    CorruptInputError
        If wfdb cannot decode the header, signal or annotation file.
    """
    import wfdb

    base = folder / name
    missing = [s for s in (".hea", ".dat", ".atr") if not base.with_suffix(s).is_file()]
    if missing:
        raise DataNotFoundError(
            f"MIT-BIH record {name!r} ({', '.join(missing)})",
            str(folder),
            f"known records: {ALL_RECORDS[0]}..{ALL_RECORDS[-1]}",
        )
    try:
        rec = wfdb.rdrecord(str(base))
        ann = wfdb.rdann(str(base), "atr")
    except Exception as exc:  # wfdb raises ValueError/IndexError/struct errors on bad bytes
        raise CorruptInputError(f"cannot read MIT-BIH record {base}: {exc}") from exc
    names = list(rec.sig_name or [])
    if lead not in names:
        raise DataNotFoundError(f"lead {lead!r} of record {name!r}", f"leads {names}")
    if rec.p_signal is None:
        raise CorruptInputError(f"record {base} has no physical signal")
    channel = names.index(lead)
    units = (rec.units or ["mV"] * len(names))[channel]
    scale = microvolts_per(units)
    if scale is None:
        raise CorruptInputError(f"record {name!r}: lead {lead!r} is in {units!r}, not a voltage")
    signal = np.asarray(rec.p_signal[:, channel], dtype=np.float64) * scale
    beat_samples, beat_labels = aami_beats(ann.sample, ann.symbol, signal.size, name)
    return MitdbRecord(
        name=name,
        fs=float(rec.fs),
        signal_uv=signal,
        lead=lead,
        beat_samples=beat_samples,
        beat_labels=beat_labels,
    )


def aami_beats(
    samples: Sequence[int] | npt.NDArray[np.int64],
    symbols: Sequence[str],
    n_samples: int,
    name: str = "",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The beats of an annotation that have an AAMI class.

    Parameters
    ----------
    samples : sequence of int
        Annotation positions, samples of the record.
    symbols : sequence of str
        Annotation symbols, same order (``N``, ``V``, ``+``...).
    n_samples : int
        The record's length, samples: annotations outside ``[0, n_samples)`` are dropped.
    name : str
        The record, for the log line on duplicate positions.

    Returns
    -------
    beat_samples : ndarray, shape (n,), int64
        Sorted, unique sample indices of the beats (rhythm notes and non-beats dropped).
    beat_labels : ndarray, shape (n,), int64
        AAMI class index of each (``AAMI_CLASSES``).
    """
    sym = np.asarray(symbols)
    pos = np.asarray(samples, dtype=np.int64)
    keep = np.isin(sym, list(AAMI_MAP)) & (pos >= 0) & (pos < n_samples)
    labels = np.array([AAMI_MAP[s] for s in sym[keep]], dtype=np.int64)
    beat_samples = pos[keep]
    order = np.argsort(beat_samples, kind="stable")
    beat_samples, labels = beat_samples[order], labels[order]
    # duplicate positions would break strictly increasing RR intervals; keep the first
    unique = np.diff(beat_samples, prepend=-1) > 0
    if not np.all(unique):
        _LOGGER.warning("record %s: %d duplicate beat positions dropped", name, (~unique).sum())
    return beat_samples[unique], labels[unique]
