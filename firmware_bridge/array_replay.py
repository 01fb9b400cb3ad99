"""The base of the array replays (:class:`ArrayReplay`): a recording loaded whole, cut into
chunks of ``chunk_s`` seconds, paced, counted, with the gaps of a time column kept.

With ``speed=1.0`` a chunk is yielded when its last sample would have been measured (real
time); ``speed=10`` plays ten times faster; ``speed=None`` as fast as the consumer takes them.
Timestamps start at ``t0_ns`` (default: the wall clock when the source is entered), so a replay
looks like a device streaming now. WFDB records: :mod:`firmware_bridge.replay`; CSV files:
:mod:`firmware_bridge.csv_replay`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError
from common.types import SignalChunk, StreamKind
from firmware_bridge.sources import SourceStats, check_rate

_LOGGER = logging.getLogger(__name__)


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
