"""Replay of a CSV recording as a live source (:class:`CsvReplaySource`).

A header row names the columns; an optional time column sets the rate (its name says its unit:
watch exports write ``timestamp_ms``) and is never replayed as a signal. A dropout in it is
replayed as a gap (:func:`time_grid`); time that stands still or goes back is refused. The rest is
:class:`firmware_bridge.array_replay.ArrayReplay`: chunks, pacing, counting.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.types import StreamKind
from firmware_bridge.array_replay import ArrayReplay
from firmware_bridge.sources import check_rate

_LOGGER = logging.getLogger(__name__)

# CSV time columns and their unit (s per unit): exports name them with a unit suffix, and a
# time column read as a signal would replay a ramp as the ECG (no beats, no error).
_TIME_UNITS = {"": 1.0, "_s": 1.0, "_ms": 1e-3, "_us": 1e-6, "_ns": 1e-9}
_TIME_COLUMNS = {
    f"{base}{suffix}": scale
    for base in ("time", "t", "timestamp")
    for suffix, scale in _TIME_UNITS.items()
} | {"seconds": 1.0}


class CsvReplaySource(ArrayReplay):
    """Replay a CSV file with a header row: an optional time column and value columns.

    Parameters
    ----------
    path : Path
        The file. The time column is ``time``, ``t`` or ``timestamp``, bare or with a unit
        suffix ``_s``, ``_ms``, ``_us``, ``_ns`` (bare: seconds), or ``seconds``.
    fs : float, optional
        Sampling rate in Hz; required without a time column, else estimated from it.
    kind : StreamKind
        What the values are; they must already be in its unit after ``scale``.
    columns : sequence of str or int, optional
        Value columns (names or indices among the non-time columns); default all.
    scale : float
        Factor applied to the values (e.g. 1000 for mV -> µV).
    """

    def __init__(
        self,
        path: Path,
        *,
        fs: float | None = None,
        kind: StreamKind = StreamKind.ECG,
        columns: Sequence[str | int] | None = None,
        scale: float = 1.0,
        speed: float | None = 1.0,
        chunk_s: float = 1.0,
        t0_ns: int | None = None,
        start_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        self._fs = fs
        self.columns = list(columns) if columns else None
        self.scale = scale
        super().__init__(
            f"csv:{self.path.name}",
            kind=kind,
            speed=speed,
            chunk_s=chunk_s,
            t0_ns=t0_ns,
            start_s=start_s,
            duration_s=duration_s,
        )

    def _load(self) -> tuple[npt.NDArray[np.float64], float]:
        if not self.path.is_file():
            raise DataNotFoundError(f"CSV file {self.path.name}", str(self.path.parent))
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which would hide the time column
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CorruptInputError(f"{self.path.name}: not a CSV text file ({exc})") from exc
        if len(rows) < 2:
            raise CorruptInputError(f"{self.path}: needs a header row and at least one data row")
        header = [h.strip() for h in rows[0]]
        try:
            data = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
        except ValueError as exc:
            raise CorruptInputError(f"{self.path}: non-numeric value ({exc})") from exc
        if data.ndim != 2 or data.shape[1] != len(header):
            raise CorruptInputError(f"{self.path}: rows do not all have {len(header)} columns")
        tcol = next((i for i, h in enumerate(header) if h.lower() in _TIME_COLUMNS), None)
        timed = tcol is not None and data.shape[0] >= 2
        if self._fs is None and not timed:
            raise CorruptInputError(f"{self.path}: no time column; pass fs (Hz)")
        if tcol is not None and timed:
            t_s = data[:, tcol] * _TIME_COLUMNS[header[tcol].lower()]
            fs = _rate_from_times(t_s, self.path.name) if self._fs is None else self._fs
            self._row_grid = self._grid(t_s, fs)
        else:
            fs = float(self._fs or 0.0)
        check_rate(
            self.kind, fs, f"{self.path.name} ({'time column' if self._fs is None else 'fs'})"
        )
        value_idx = [i for i in range(len(header)) if i != tcol]
        names = [header[i] for i in value_idx]
        if self.columns:
            chosen = []
            for c in self.columns:
                if isinstance(c, int) and 0 <= c < len(value_idx):
                    chosen.append(value_idx[c])
                elif isinstance(c, str) and c in names:
                    chosen.append(value_idx[names.index(c)])
                else:
                    raise CorruptInputError(f"{self.path}: no column {c!r} ({names})")
            value_idx = chosen
        self.channel_names = [header[i] for i in value_idx]
        self._label = f"csv:{self.path.name} {','.join(self.channel_names)} @ {fs:g} Hz"
        return data[:, value_idx] * self.scale, float(fs)

    def _grid(self, t_s: npt.NDArray[np.float64], fs: float) -> npt.NDArray[np.int64] | None:
        """Each row's sample index from the time column (s), or None when an ``fs`` given
        with the file contradicts the column (a bare ``time`` written in ms, say): the given
        rate wins, as it always did, and the column's times are not used."""
        typical = float(np.median(np.diff(t_s))) * fs
        if self._fs is not None and not 0.5 < typical < 1.5:
            _LOGGER.warning(
                "%s: the time column steps at %g Hz, not the %g Hz given: its times (and any "
                "gaps in them) are not used", self.path.name, fs / typical, fs,
            )  # fmt: skip
            return None
        return time_grid(t_s, fs, self.path.name)


def _rate_from_times(t: npt.NDArray[np.float64], name: str) -> float:
    """Sampling rate (Hz) of a time column (s): over the whole span when the steps are even
    (timestamps rounded to a few decimals average out: 360.0, not 359.71), else the median
    step; rounded to 1 mHz (250.0, not 249.99999999999977; 1 mHz is 0.24 s a day at 360 Hz)."""
    steps = np.diff(t)
    dt = float(np.median(steps))
    if not dt > 0:
        raise CorruptInputError(f"{name}: time column is not increasing")
    # the mean of the steps that are no gap (a dropout's step would lower the rate, the median
    # of ms-rounded steps is a whole ms: 130 Hz written as 7 and 8 ms read 125 Hz)
    regular = steps[(steps > 0.5 * dt) & (steps < 1.5 * dt)]
    return round(1.0 / float(regular.mean()), 3)


def time_grid(t: npt.NDArray[np.float64], fs: float, name: str) -> npt.NDArray[np.int64]:
    """Each row's sample index on the ``fs`` grid, from its time.

    Consecutive rows are one sample apart; a step of more than 1.5 samples is a gap (a watch
    export's dropout) of ``round(step * fs) - 1`` missing samples, so the replay does not join
    its two sides.

    Parameters
    ----------
    t : ndarray, shape (n,), float64
        Each row's time, s.
    fs : float
        Sampling rate, Hz.
    name : str
        The file's name, for error messages.

    Returns
    -------
    ndarray, shape (n,), int64
        Sample index of each row (the first row 0).

    Raises
    ------
    CorruptInputError
        Where time stands still or goes back (two exports pasted together), naming the data
        row (1-based, after the header); or when its typical step is not one sample at ``fs``.
    """
    steps = np.diff(t) * fs
    bad = np.flatnonzero(~(steps > 0))
    if bad.size:
        row = int(bad[0]) + 2
        raise CorruptInputError(
            f"{name}: time does not increase at data row {row} ({t[row - 2]:g} -> "
            f"{t[row - 1]:g} s); split the file where the recording restarts"
        )
    typical = float(np.median(steps))
    if not 0.5 < typical < 1.5:  # an fs given beside a time column that says otherwise
        raise CorruptInputError(
            f"{name}: the time column steps at {fs / typical:g} Hz, not {fs:g} Hz"
        )
    grid = np.cumsum(np.where(steps > 1.5, np.rint(steps), 1))
    return np.concatenate([[0], grid]).astype(np.int64)
