"""Downsampled live signal for the web page (pure).

The web plot needs neither the full rate nor one message per sensor notification. ``LiveDecimator``
low-passes causally (Butterworth, state kept across chunks, so no seams), resamples to
``out_fs`` by linear interpolation on the filtered stream and emits fixed-duration batches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.signals.iir import butter_sos, sosfilt_zi
from common.signals.sosblock import SosKernel
from common.types import SignalChunk

_NS = 1_000_000_000


class LiveDecimator:
    """Stream of chunks at any rate -> chunks at ``out_fs`` of ``batch_s`` seconds each.

    Parameters
    ----------
    out_fs : float
        Output rate, Hz. Inputs at or below it pass at their own rate (never upsampled).
    batch_s : float
        Duration of each output chunk, s.
    """

    def __init__(self, out_fs: float = 125.0, batch_s: float = 0.04) -> None:
        self._out_fs = out_fs
        self._batch_s = batch_s
        self._fs = 0.0
        self._sos: SosKernel | None = None
        self._zi: npt.NDArray[np.float64] | None = None
        self._next_t = 0.0  # next output time, in input samples since the anchor
        self._n_in = 0  # input samples consumed since the anchor
        self._last: npt.NDArray[np.float64] | None = None  # last filtered input row
        self._t0_ns = 0
        self._seq0 = 0
        self._pending: list[npt.NDArray[np.float64]] = []
        self._pending_n = 0
        self._out_seq0 = 0
        self._out_seq = 0
        self._expect_seq: int | None = None

    @property
    def fs(self) -> float:
        """Rate of the emitted chunks, Hz."""
        return min(self._fs, self._out_fs) if self._fs else self._out_fs

    def _anchor(self, chunk: SignalChunk) -> None:
        self._fs = chunk.fs
        n_ch = chunk.samples.shape[1]
        if chunk.fs > self._out_fs:
            sos = butter_sos(4, 0.4 * self._out_fs, "lowpass", chunk.fs)
            self._sos = SosKernel(sos)
            zi = sosfilt_zi(sos)  # (sections, 2)
            self._zi = np.repeat(zi[:, :, None], n_ch, axis=2) * chunk.samples[0][None, None, :]
        else:
            self._sos, self._zi = None, None
        self._next_t = 0.0
        self._n_in = 0
        self._last = None
        self._t0_ns = chunk.t0_ns
        self._seq0 = chunk.seq
        self._pending, self._pending_n = [], 0
        # output indices continue the input's position scaled to the output rate
        self._out_seq0 = round(chunk.seq * self.fs / chunk.fs)
        self._out_seq = self._out_seq0

    def push(self, chunk: SignalChunk) -> list[SignalChunk]:
        """Feed one chunk; returns the complete output batches (maybe none)."""
        if self._expect_seq is None or chunk.fs != self._fs or chunk.seq != self._expect_seq:
            self._anchor(chunk)
        self._expect_seq = chunk.seq + chunk.n_samples
        x = chunk.samples
        if self._sos is not None and self._zi is not None:
            x, self._zi = self._sos.run(x, self._zi)
        out_rows = self._resample(x) if self._sos is not None else x
        self._pending.append(out_rows)
        self._pending_n += out_rows.shape[0]
        return self._emit(chunk)

    def _resample(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        step = self._fs / self._out_fs  # input samples per output sample
        prev = x[:1] if self._last is None else self._last[None, :]
        ext = np.vstack([prev, x])  # ext[i] is input sample n_in - 1 + i
        base = self._n_in - 1
        end = self._n_in + x.shape[0] - 1  # last input index available
        times = np.arange(self._next_t, end + 1e-9, step)
        self._next_t = float(times[-1] + step) if times.size else self._next_t
        self._n_in += x.shape[0]
        self._last = x[-1].copy()
        if times.size == 0:
            return np.empty((0, x.shape[1]))
        pos = times - base
        i = np.clip(np.floor(pos).astype(np.int64), 0, ext.shape[0] - 2)
        frac = (pos - i)[:, None]
        return np.asarray(ext[i] * (1 - frac) + ext[i + 1] * frac)

    def _emit(self, chunk: SignalChunk) -> list[SignalChunk]:
        fs = self.fs
        per = max(1, round(self._batch_s * fs))
        if self._pending_n < per:
            return []
        rows = np.vstack(self._pending)
        n_full = rows.shape[0] // per * per
        out = []
        for k in range(0, n_full, per):
            seq = self._out_seq + k
            t0 = self._t0_ns + round((seq - self._out_seq0) * _NS / fs)
            out.append(SignalChunk(chunk.kind, fs, t0, rows[k : k + per].copy(), seq))
        self._out_seq += n_full
        rest = rows[n_full:]
        self._pending, self._pending_n = [rest], rest.shape[0]
        return out
