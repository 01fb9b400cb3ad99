"""Fixed-size ring buffer of one signal stream of one patient (pure numpy).

The web page shows the last few seconds of each stream, so the server keeps exactly that: a
ring of ``capacity`` samples with their times. Duplicated chunks (same ``seq`` range, e.g. a
QoS 1 redelivery) are dropped; a gap in ``seq`` is counted and the samples are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from common.types import SignalChunk, StreamKind

_LOGGER = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass
class StreamRing:
    """The last ``capacity`` samples of one stream.

    Parameters
    ----------
    kind : StreamKind
        The stream (fixes the unit).
    fs : float
        Sampling rate in Hz.
    n_channels : int
        Columns per sample (ECG 1, ACC 3...).
    capacity : int
        Samples kept.
    """

    kind: StreamKind
    fs: float
    n_channels: int
    capacity: int
    _t: F64 = field(init=False, repr=False)
    _v: F64 = field(init=False, repr=False)
    _head: int = field(default=0, init=False)
    _count: int = field(default=0, init=False)
    next_seq: int | None = field(default=None, init=False)
    gaps: int = field(default=0, init=False)
    duplicates: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.n_channels <= 0:
            raise ValueError("capacity and n_channels must be positive")
        self._t = np.zeros(self.capacity)
        self._v = np.zeros((self.capacity, self.n_channels))

    @classmethod
    def for_chunk(cls, chunk: SignalChunk, seconds: float) -> StreamRing:
        """A ring sized for ``seconds`` of the chunk's stream."""
        capacity = max(1, int(round(seconds * chunk.fs)))
        return cls(chunk.kind, chunk.fs, chunk.samples.shape[1], capacity)

    def accepts(self, chunk: SignalChunk) -> bool:
        """True if the chunk has this ring's rate and channel count."""
        return chunk.fs == self.fs and chunk.samples.shape[1] == self.n_channels

    def push(self, chunk: SignalChunk) -> SignalChunk | None:
        """Append a chunk; return the part that was new (``None`` if all of it was seen).

        Raises
        ------
        ValueError
            If the chunk's rate or channel count differs (the caller makes a new ring).
        """
        if not self.accepts(chunk):
            raise ValueError("chunk does not match this ring's rate or channel count")
        samples = chunk.samples
        skip = 0
        if self.next_seq is not None:
            if chunk.seq + chunk.n_samples <= self.next_seq:
                self.duplicates += 1
                return None
            if chunk.seq < self.next_seq:  # partly overlapping redelivery
                skip = self.next_seq - chunk.seq
                self.duplicates += 1
            elif chunk.seq > self.next_seq:
                self.gaps += 1
                _LOGGER.debug("%s: gap of %d samples", self.kind, chunk.seq - self.next_seq)
        samples = samples[skip:]
        t0_s = chunk.t0_ns / 1e9 + skip / chunk.fs
        times = t0_s + np.arange(samples.shape[0]) / chunk.fs
        self._write(times, samples)
        self.next_seq = chunk.seq + chunk.n_samples
        return SignalChunk(chunk.kind, chunk.fs, int(round(t0_s * 1e9)), samples, chunk.seq + skip)

    def _write(self, times: F64, values: F64) -> None:
        n = times.shape[0]
        if n >= self.capacity:
            times, values, n = times[-self.capacity :], values[-self.capacity :], self.capacity
        idx = (self._head + np.arange(n)) % self.capacity
        self._t[idx] = times
        self._v[idx] = values
        self._head = (self._head + n) % self.capacity
        self._count = min(self.capacity, self._count + n)

    def __len__(self) -> int:
        return self._count

    def snapshot(self) -> tuple[F64, F64]:
        """Times (s since the epoch), shape (n,), and values, shape (n, n_channels), oldest first."""
        start = (self._head - self._count) % self.capacity
        idx = (start + np.arange(self._count)) % self.capacity
        return self._t[idx].copy(), self._v[idx].copy()

    def window(self, t_start_s: float, t_end_s: float) -> tuple[F64, F64]:
        """The samples with ``t_start_s <= t < t_end_s`` (s since the epoch)."""
        t, v = self.snapshot()
        keep = (t >= t_start_s) & (t < t_end_s)
        return t[keep], v[keep]

    @property
    def newest_s(self) -> float:
        """Time of the newest sample in s since the epoch (``-inf`` when empty)."""
        if self._count == 0:
            return float("-inf")
        return float(self._t[(self._head - 1) % self.capacity])
