"""The device's labelled beats: their tables in the buffer's database (the model inputs of the
newest beats, and the labelled ones) and the arrays the example source
(``edge_agent.examples``) feeds the trainer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.buffer_schema import delete_all_but_newest


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


class LabelledBeatTable:
    """The buffer's ``recent_beats`` (model inputs of the newest beats, written with the
    outbox rows) and ``labelled_beats`` (those a label reached) tables
    (``SqliteBuffer.labels``).

    Parameters
    ----------
    db : sqlite3.Connection
        The buffer's connection (autocommit).
    lock : threading.RLock
        The buffer's lock.
    keep_recent, keep_labelled : int
        Most rows of each table kept by :meth:`prune` (the newest).
    """

    def __init__(
        self, db: sqlite3.Connection, lock: threading.RLock, keep_recent: int, keep_labelled: int
    ) -> None:
        self._db, self._lock = db, lock
        self._keep = {"recent_beats": keep_recent, "labelled_beats": keep_labelled}

    def prune(self) -> None:
        """Keep only the newest ``keep_recent`` feature rows and ``keep_labelled`` labels (in
        bounded batches: ``edge_agent.buffer_schema.delete_all_but_newest``)."""
        with self._lock:
            for table, keep in self._keep.items():
                delete_all_but_newest(self._db, table, keep)

    def add(
        self, t_ns: int, label: str, source: str, label_id: str, tolerance_ns: int = 150_000_000
    ) -> bool:
        """Label the recent beat nearest ``t_ns`` (ns, within ``tolerance_ns``).

        Returns False when no recent beat is close enough (too old, or no beat there).
        A later label for the same beat replaces the earlier one (a clinician's correction).
        """
        with self._lock:
            row = self._db.execute(
                "SELECT t_ns, window, window_shape, rr, in_af FROM recent_beats "
                "WHERE t_ns BETWEEN ? AND ? ORDER BY ABS(t_ns - ?) LIMIT 1",
                (t_ns - tolerance_ns, t_ns + tolerance_ns, t_ns),
            ).fetchone()
            if row is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO labelled_beats "
                "(t_ns, label, source, label_id, window, window_shape, rr, in_af) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row[0], label, source, label_id, row[1], row[2], row[3], row[4]),
            )
        return True

    def count(self) -> int:
        """Number of labelled beats kept."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labelled_beats").fetchone()[0])

    def beats(self, limit: int | None = None) -> LabelledBeats:
        """The newest labelled beats (all if ``limit`` is None), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t_ns, label, window, window_shape, rr, in_af FROM labelled_beats "
                "ORDER BY t_ns DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()[::-1]
        return labelled_from_rows(rows)
