"""PhysioNet/CinC Challenge 2017 training set reader: AliveCor single-lead ECG, 300 Hz, 9-61 s.

The folder holds ``REFERENCE-v3.csv`` (``record,label``; labels ``N`` normal, ``A`` AF, ``O``
other rhythm, ``~`` too noisy) and ``training2017/AXXXXX.mat`` (MATLAB v4, one int16 variable
``val`` of shape (1, n), ADC gain 1000 per mV). See the dataset's README and PROVENANCE.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError

_LOGGER = logging.getLogger(__name__)

FS_HZ = 300.0
ADC_GAIN_PER_MV = 1000.0
REFERENCE = "REFERENCE-v3.csv"
SIGNALS = "training2017"
#: CinC label codes -> the rhythm task's class names.
LABEL_CODES: dict[str, str] = {"N": "N", "A": "AF", "O": "O", "~": "noisy"}


@dataclass(frozen=True)
class CincReference:
    """Records and class names (``N``, ``AF``, ``O``, ``noisy``) of the reference file, in order."""

    records: tuple[str, ...]
    labels: tuple[str, ...]


def read_reference(folder: Path) -> CincReference:
    """``REFERENCE-v3.csv`` of a CinC 2017 folder.

    Raises
    ------
    DataNotFoundError
        Missing file.
    CorruptInputError
        A row that is not ``record,label`` with a known label.
    """
    path = folder / REFERENCE
    if not path.is_file():
        raise DataNotFoundError(f"CinC 2017 reference {REFERENCE}", str(folder))
    records, labels = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            if len(row) < 2 or row[1].strip() not in LABEL_CODES:
                raise CorruptInputError(f"{path}:{line}: expected 'record,label' (N, A, O, ~)")
            records.append(row[0].strip())
            labels.append(LABEL_CODES[row[1].strip()])
    return CincReference(tuple(records), tuple(labels))


def read_mat_uv(path: Path) -> npt.NDArray[np.float64]:
    """The ``val`` vector of a CinC ``.mat`` file in µV (``val`` / 1000 mV)."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DataNotFoundError(f"MATLAB file {path.name}", str(path.parent))
    try:
        val = loadmat(str(path))["val"]
    except Exception as exc:  # scipy raises assorted errors (ValueError, KeyError...) on bad files
        raise CorruptInputError(f"{path.name}: not a MATLAB v4 file with 'val' ({exc})") from exc
    arr = np.asarray(val, dtype=np.float64)
    if arr.ndim != 2 or 1 not in arr.shape:
        raise CorruptInputError(f"{path.name}: 'val' has shape {arr.shape}, expected (1, n)")
    return arr.ravel() * (1000.0 / ADC_GAIN_PER_MV)


def read_record(folder: Path, record: str) -> npt.NDArray[np.float64]:
    """One recording in µV at :data:`FS_HZ`."""
    return read_mat_uv(folder / SIGNALS / f"{record}.mat")
