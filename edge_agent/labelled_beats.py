"""The device's labelled beats as arrays (training examples), from the buffer's rows.

``edge_agent.buffer.SqliteBuffer.labelled_beats`` reads the rows; this module turns them into
the arrays the example source (``edge_agent.examples``) feeds the trainer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class LabelledBeats:
    """Training examples kept on the device.

    Attributes
    ----------
    windows : ndarray, shape (n, ...), float32
        Model inputs as the card asks.
    rr : ndarray, shape (n, n_rr_features), float32
    labels : list of str
        Class names (AAMI).
    t_ns : ndarray, shape (n,), int64
        R-peak times.
    in_af : ndarray, shape (n,), bool
        The beat's stretch was called atrial fibrillation (``BeatPrediction.in_af``).
    """

    windows: npt.NDArray[np.float32]
    rr: npt.NDArray[np.float32]
    labels: list[str]
    t_ns: npt.NDArray[np.int64]
    in_af: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.labels)


def labelled_from_rows(rows: Sequence[Sequence[Any]]) -> LabelledBeats:
    """Rows ``(t_ns, label, window bytes, window shape JSON, rr bytes, in_af)``, oldest first,
    as arrays; only the rows of the newest window shape (a model swap may change it)."""
    if not rows:
        empty = np.zeros((0, 0), np.float32)
        return LabelledBeats(empty, empty, [], np.zeros(0, np.int64), np.zeros(0, bool))
    newest = rows[-1][3]
    rows = [r for r in rows if r[3] == newest]
    shape = tuple(json.loads(newest))
    windows = np.stack([np.frombuffer(r[2], dtype="<f4").reshape(shape) for r in rows])
    rr = np.stack([np.frombuffer(r[4], dtype="<f4") for r in rows])
    return LabelledBeats(
        windows.astype(np.float32),
        rr.astype(np.float32),
        [str(r[1]) for r in rows],
        np.array([r[0] for r in rows], np.int64),
        np.array([bool(r[5]) for r in rows], bool),
    )
