"""``scipy.signal.sosfilt`` in numpy, exact up to rounding, in block state-space form.

A second-order section in transposed direct form II is the linear system
``z[n+1] = A z[n] + g x[n]``, ``y[n] = z[n][0] + b0 x[n]``. Over a block of ``B`` samples its
output is the forced response (the block convolved with the impulse response ``h[:B]``: one
Toeplitz matrix product for all blocks at once) plus the zero-input response of the entry state
(``A^n`` applied to it). Only the 2-element state is carried between blocks in a Python loop,
so the cost is ~``2 B`` multiply-adds per sample in BLAS instead of a per-sample Python loop.
Nothing is truncated: the result equals the recursion up to floating-point rounding.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from common.signals.iir import _state_space

FloatArray = npt.NDArray[np.float64]
BLOCK = 128  # samples per block: a chunk of 10 s at 130 Hz is ~10 blocks


class _Section:
    """Precomputed block responses of one section (for blocks of up to ``BLOCK`` samples)."""

    def __init__(self, section: FloatArray) -> None:
        trans, inp, b0 = _state_space(section)
        powers = np.empty((BLOCK + 1, 2, 2))  # A^n
        powers[0] = np.eye(2)
        for n in range(1, BLOCK + 1):
            powers[n] = trans @ powers[n - 1]
        self.powers = powers
        # state after n + 1 steps caused by a unit input at step 0: A^n g
        self.impulse_state = powers[:BLOCK] @ inp  # (BLOCK, 2)
        self.h = np.concatenate(([b0], self.impulse_state[: BLOCK - 1, 0]))  # impulse response
        idx = np.arange(BLOCK)
        lag = idx[:, None] - idx[None, :]
        self.toeplitz = np.where(lag >= 0, self.h[np.clip(lag, 0, None)], 0.0)  # (B, B)
        self.free = powers[:BLOCK, 0, :]  # y[n] = free[n] @ z for zero input, (B, 2)

    def run(self, x: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Filter ``x`` (shape (n, ch)) from state ``z`` (shape (2, ch)); returns (y, end state)."""
        n = x.shape[0]
        nb, rest = divmod(n, BLOCK)
        y = np.empty_like(x)
        if nb:
            ch = x.shape[1]
            # all blocks side by side as the columns of one (B, nb * ch) matrix: one GEMM for
            # every block instead of a stack of matrix-vector products
            cols = x[: nb * BLOCK].reshape(nb, BLOCK, ch).transpose(1, 0, 2).reshape(BLOCK, -1)
            forced = (self.toeplitz @ cols).reshape(BLOCK, nb, ch).transpose(1, 0, 2)
            # end-state contribution of each block's input: sum_k A^(B-1-k) g x[k]
            pushed = (self.impulse_state[::-1].T @ cols).reshape(2, nb, ch).transpose(1, 0, 2)
            starts = np.empty((nb, 2, ch))
            step = self.powers[BLOCK]
            for j in range(nb):
                starts[j] = z
                z = step @ z + pushed[j]
            y[: nb * BLOCK] = (forced + self.free @ starts).reshape(nb * BLOCK, -1)
        if rest:
            xr = x[nb * BLOCK :]
            forced_r = self.toeplitz[:rest, :rest] @ xr
            y[nb * BLOCK :] = forced_r + self.free[:rest] @ z
            z = self.powers[rest] @ z + self.impulse_state[:rest][::-1].T @ xr
        return y, z


@functools.lru_cache(maxsize=64)
def _section(coefficients: bytes) -> _Section:
    """The precomputed section for 6 float64 coefficients (a stream re-creates the same few
    filters per window, e.g. the rhythm scorer's zero-phase filter; read-only once built)."""
    return _Section(np.frombuffer(coefficients, dtype=np.float64))


class SosKernel:
    """Cascade of sections; :meth:`run` is ``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)``.

    Parameters
    ----------
    sos : array_like, shape (n_sections, 6)
    """

    def __init__(self, sos: npt.ArrayLike) -> None:
        rows = np.asarray(sos, dtype=np.float64).reshape(-1, 6)
        self._sections = [_section(r.tobytes()) for r in rows]

    def run(self, x: npt.ArrayLike, zi: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Filter along axis 0.

        Parameters
        ----------
        x : array_like, shape (n,) or (n, ch)
            Samples (any unit).
        zi : array_like, shape (n_sections, 2) or (n_sections, 2, ch)
            Entry state, as in ``sosfilt``.

        Returns
        -------
        y : ndarray, same shape as ``x``
        zf : ndarray, same shape as ``zi``
            State after the last sample.
        """
        arr = np.asarray(x, dtype=np.float64)
        state = np.asarray(zi, dtype=np.float64)
        flat = arr.ndim == 1
        y = arr.reshape(arr.shape[0], -1)
        zs = state.reshape(len(self._sections), 2, -1)
        zf = np.empty_like(zs)
        for s, section in enumerate(self._sections):
            y, zf[s] = section.run(y, zs[s])
        return (y[:, 0] if flat else y), zf.reshape(state.shape)
