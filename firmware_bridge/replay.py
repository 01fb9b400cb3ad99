"""Replay of recorded signals (WFDB records; CSV files in :mod:`firmware_bridge.csv_replay`) as a
live source.

The array replays read the whole recording at ``__aenter__`` (a 30-min MIT-BIH record is ~10 MB as
float64), then cut it into chunks of ``chunk_s`` seconds. With ``speed=1.0`` a chunk is yielded
when its last sample would have been measured (real time); ``speed=10`` plays ten times faster;
``speed=None`` as fast as the consumer takes them. Timestamps start at ``t0_ns`` (default: the
wall clock when the source is entered), so a replay looks like a device streaming now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError, MedchainError
from common.types import SignalChunk, StreamKind
from firmware_bridge.sources import SourceStats, check_rate
from firmware_bridge.wfdb_header import MAX_FS, check_wfdb_header

_LOGGER = logging.getLogger(__name__)

# Scale factors from a WFDB physical unit to the unit of the stream kind (ECG µV).
_TO_MICROVOLT = {"mv": 1000.0, "uv": 1.0, "µv": 1.0, "v": 1e6}


def _wfdb() -> Any:
    """The ``wfdb`` package: an extra of its own (it pulls scipy, pandas and matplotlib)."""
    try:
        import wfdb
    except ImportError as exc:
        raise MedchainError(
            "replaying a WFDB record needs wfdb: pip install 'medchain[wfdb]'"
        ) from exc
    return wfdb


class ArrayReplay:
    """Base of the array replays: chunking, pacing and counting over a loaded array.

    Subclasses implement ``_load`` returning (samples (n, ch) float64, fs Hz); one whose rows
    are not all consecutive (a time column with gaps) also sets ``_row_grid`` (n,) int64: each
    row's sample index on the rate's grid. A gap is then a jump in ``seq`` (counted in
    ``stats.gaps`` / ``missing_samples``), as a live source reports one, so the pipeline resets
    instead of joining the two sides. ``start_s`` and ``duration_s`` (s) select rows.
    """

    def __init__(
        self,
        label: str,
        *,
        kind: StreamKind = StreamKind.ECG,
        speed: float | None = 1.0,
        chunk_s: float = 1.0,
        t0_ns: int | None = None,
        start_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        if chunk_s <= 0:
            raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
        self._label = label
        self.kind = kind
        self.speed = speed
        self.chunk_s = chunk_s
        self._t0_ns = t0_ns
        self.start_s = start_s
        self.duration_s = duration_s
        self._stats = SourceStats()
        self._samples: npt.NDArray[np.float64] | None = None
        self._row_grid: npt.NDArray[np.int64] | None = None
        self.fs = 0.0
        self.channel_names: list[str] = []

    @property
    def name(self) -> str:
        """Description for logs."""
        return self._label

    @property
    def length_s(self) -> float | None:
        """Length of the loaded segment in s (None before ``async with``): what a progress
        display counts ``SignalChunk`` durations against."""
        return None if self._samples is None else self._samples.shape[0] / self.fs

    @property
    def stats(self) -> SourceStats:
        """Counters."""
        return self._stats

    def _load(self) -> tuple[npt.NDArray[np.float64], float]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        samples, fs = await asyncio.to_thread(self._load)
        check_rate(self.kind, fs, str(self))
        first = round(self.start_s * fs)
        last = None if self.duration_s is None else first + round(self.duration_s * fs)
        samples = samples[first:last]
        if self._row_grid is not None:
            self._row_grid = self._row_grid[first:last] - self._row_grid[first:last][:1]
        if samples.ndim != 2 or samples.size == 0:
            raise CorruptInputError(
                f"{self}: no samples between {self.start_s:g} s and "
                f"{'the end' if self.duration_s is None else f'{self.duration_s:g} s later'}"
            )
        bad = ~np.isfinite(samples)
        if bad.all():
            raise CorruptInputError(f"{self}: no valid sample (all {bad.size} are missing or NaN)")
        if bad.any():
            # Gaps in a recording (NaN in WFDB) would be rejected downstream: hold the last value.
            _LOGGER.warning("%s: %d non-finite samples held at the previous value", self, bad.sum())
            samples = _forward_fill(samples)
        self._samples, self.fs = samples, fs
        _LOGGER.info("%s: %d samples x %d ch at %g Hz", self, *samples.shape, fs)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._samples = None

    def __str__(self) -> str:
        return self._label

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """Yield the recording as chunks of ``chunk_s`` seconds, paced by ``speed``."""
        if self._samples is None:
            raise RuntimeError(f"{self}: use 'async with' before chunks()")
        samples, fs = self._samples, self.fs
        step = max(1, round(self.chunk_s * fs))
        t0_ns = time.time_ns() if self._t0_ns is None else self._t0_ns
        start = time.monotonic()
        grid = self._row_grid
        for row, seq, n in _chunk_plan(samples.shape[0], step, grid):
            if row and grid is not None and seq > grid[row - 1] + 1:
                self._stats.gaps += 1
                self._stats.missing_samples += int(seq - grid[row - 1] - 1)
            if self.speed is None:
                await asyncio.sleep(0)  # let other tasks run between chunks
            else:
                delay = start + (seq + n) / fs / self.speed - time.monotonic()
                await asyncio.sleep(max(0.0, delay))
            block = np.ascontiguousarray(samples[row : row + n])
            chunk = SignalChunk(self.kind, fs, t0_ns + round(seq * 1e9 / fs), block, seq)
            self._stats.count_chunk(chunk)
            yield chunk


def _chunk_plan(
    n_rows: int, step: int, grid: npt.NDArray[np.int64] | None
) -> Iterator[tuple[int, int, int]]:
    """``(first row, seq, rows)`` of each chunk: ``step`` rows at most, never across a jump of
    ``grid`` (each row's sample index; None: consecutive rows)."""
    if grid is None:
        breaks = [0, n_rows]
    else:
        breaks = [0, *(np.flatnonzero(np.diff(grid) != 1) + 1).tolist(), n_rows]
    for a, b in itertools.pairwise(breaks):
        for first in range(a, b, step):
            yield first, first if grid is None else int(grid[first]), min(step, b - first)


def _forward_fill(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = x.copy()
    for c in range(out.shape[1]):
        col = out[:, c]
        ok = np.isfinite(col)
        if not ok.any():
            col[:] = 0.0
            continue
        idx = np.where(ok, np.arange(col.size), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.argmax(ok))
        col[:] = col[idx]
        col[:first] = col[first]
    return out


class WfdbReplaySource(ArrayReplay):
    """Replay a WFDB record (e.g. MIT-BIH ``mitdb/100``) as ECG in µV.

    Parameters
    ----------
    record : Path
        Record path without or with ``.hea``.
    channels : sequence of str or int, optional
        Signal names (``MLII``) or indices; default the first signal.
    kind : StreamKind
        Stream kind of the samples (ECG by default; physical units are converted to µV).
    speed, chunk_s, t0_ns
        See :class:`ArrayReplay`.
    """

    def __init__(
        self,
        record: Path,
        *,
        channels: Sequence[str | int] | None = None,
        kind: StreamKind = StreamKind.ECG,
        speed: float | None = 1.0,
        chunk_s: float = 1.0,
        t0_ns: int | None = None,
        start_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        record = Path(record)
        if record.suffix in (".hea", ".dat", ".atr"):
            record = record.with_suffix("")
        self.record = record
        self.channels = list(channels) if channels else [0]
        super().__init__(
            f"wfdb:{record.name}",
            kind=kind,
            speed=speed,
            chunk_s=chunk_s,
            t0_ns=t0_ns,
            start_s=start_s,
            duration_s=duration_s,
        )

    def _to_microvolt(self, unit: str, channel: str) -> float:
        """µV per physical unit of an ECG channel. A header without a unit (WFDB writes
        ``NU``) is taken as mV, as WFDB's own default, with a warning; any other unit (mmHg, %)
        is not an ECG: replayed as one, a pressure wave would be scored as beats."""
        key = str(unit).strip().lower()
        if key in _TO_MICROVOLT:
            return _TO_MICROVOLT[key]
        if key in ("", "nu"):
            _LOGGER.warning("%s: channel %s has no unit: read as mV", self, channel)
            return 1000.0
        raise CorruptInputError(
            f"{self.record.name}: channel {channel!r} is in {unit!r}, not a voltage: "
            "not an ECG (choose the ECG channel: replay ?channel=NAME, evaluate --lead NAME)"
        )

    def _load(self) -> tuple[npt.NDArray[np.float64], float]:
        wfdb = _wfdb()

        if not self.record.with_suffix(".hea").is_file():
            raise DataNotFoundError(f"WFDB record {self.record.name}", str(self.record.parent))
        header = check_wfdb_header(self.record)
        if header.fs is None:
            _LOGGER.warning("%s: header gives no sampling frequency: WFDB's default 250 Hz", self)
        with _wfdb_errors(self.record):
            names = list(wfdb.rdheader(str(self.record)).sig_name or [])
        idx: list[int] = []
        for ch in self.channels:
            if isinstance(ch, int):
                if not 0 <= ch < len(names):
                    raise CorruptInputError(f"{self.record.name} has no channel {ch} ({names})")
                idx.append(ch)
            elif ch in names:
                idx.append(names.index(ch))
            else:
                raise CorruptInputError(f"{self.record.name} has no channel {ch!r} ({names})")
        with _wfdb_errors(self.record):
            rec = wfdb.rdrecord(str(self.record), channels=idx)
        if rec.p_signal is None or float(rec.fs) != (header.fs or float(rec.fs)):
            raise CorruptInputError(
                f"{self.record.name}: wfdb read {rec.fs} Hz, header {header.fs}"
            )
        signal = np.asarray(rec.p_signal, dtype=np.float64)
        self.channel_names = [names[i] for i in idx]
        if self.kind is StreamKind.ECG:
            units = list(rec.units or ["mV"] * len(idx))
            signal = signal * np.array(
                [self._to_microvolt(u, n) for u, n in zip(units, self.channel_names, strict=True)]
            )
        self._label = f"wfdb:{self.record.name} {','.join(self.channel_names)} @ {rec.fs:g} Hz"
        return signal, float(rec.fs)

    def annotations(self, extension: str = "atr") -> tuple[npt.NDArray[np.int64], list[str]]:
        """Reference beat annotations of the replayed segment (e.g. MIT-BIH ``.atr``).

        Returns
        -------
        samples : ndarray of int64, shape (n,)
            Annotation positions as stream sample indices (``seq`` space: 0 = first replayed
            sample), only those inside the replayed segment.
        symbols : list of str
            The annotation symbols (``N``, ``V``, ``A``...), same order.

        Raises
        ------
        DataNotFoundError
            If the record has no such annotation file.
        CorruptInputError
            If it cannot be read.
        """
        wfdb = _wfdb()

        path = self.record.with_suffix(f".{extension}")
        if not path.is_file():
            raise DataNotFoundError(f"annotations {path.name}", str(path.parent))
        with _wfdb_errors(path):
            ann = wfdb.rdann(str(self.record), extension)
            fs = float(wfdb.rdheader(str(self.record)).fs or 0.0)
        ann_fs = float(ann.fs or fs)
        if not (0 < fs <= MAX_FS and 0 < ann_fs <= MAX_FS):
            raise CorruptInputError(f"{path.name}: sampling frequency {ann_fs} Hz out of range")
        samples = np.asarray(ann.sample, dtype=np.int64)
        if ann_fs != fs:  # an annotation file may count at its own rate: the stream's samples
            samples = np.rint(samples * (fs / ann_fs)).astype(np.int64)
        first = round(self.start_s * fs)
        last = None if self.duration_s is None else first + round(self.duration_s * fs)
        pos = samples - first
        keep = (pos >= 0) & (pos < (np.iinfo(np.int64).max if last is None else last - first))
        symbols = [str(x) for x, k in zip(ann.symbol, keep, strict=True) if k]
        return pos[keep], symbols


@contextlib.contextmanager
def _wfdb_errors(path: Path) -> Iterator[None]:
    """Whatever the ``wfdb`` package raises on a malformed record (``HeaderSyntaxError``,
    ``IndexError``, ``KeyError``, ``MemoryError``...: it has no error type of its own) becomes
    one ``CorruptInputError`` line naming the record."""
    try:
        yield
    except (DataNotFoundError, CorruptInputError):
        raise
    except Exception as exc:  # the wfdb package's errors are not a typed family
        detail = " ".join(str(exc).split())[:200]
        raise CorruptInputError(
            f"{path.name}: unreadable WFDB record ({type(exc).__name__}: {detail})"
        ) from exc
