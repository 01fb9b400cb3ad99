"""Running-median beat template channel, batch and streaming (pure numpy).

Channel 1 of the beat model's input is each normalised beat window minus the element-wise
median of the previous ``n_prev`` windows of the same stream. It tells the net whether a beat
looks like the wearer's usual beat, which is what separates an aberrant-looking SVEB of a
bundle-branch-block patient from a VEB. Training (``models.tasks.beat``) calls
:func:`template_channel` on a whole record; the edge (``edge_agent.featurize``) feeds
:class:`TemplateTracker` the windows as beats are confirmed. Both give the same numbers for
any chunking of the stream, so there is one definition here.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

# Previous windows in the template of the shipped beat model (``template_beats`` on its card).
TEMPLATE_BEATS = 16


def template_channel(
    windows: npt.NDArray[np.floating], n_prev: int = TEMPLATE_BEATS
) -> npt.NDArray[np.floating]:
    """``windows[i] - median(windows[i - n_prev : i])`` per beat (causal; beat 0 gives zeros).

    Parameters
    ----------
    windows : ndarray, shape (n_beats, L)
        Normalised (dimensionless) beat windows of one stream, in time order (every detected
        beat, any class).
    n_prev : int
        Number of previous windows in the running median template (>= 1).

    Returns
    -------
    ndarray, shape (n_beats, L)
        Same dtype as ``windows``.

    Examples
    --------
    >>> w = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    >>> template_channel(w, n_prev=2).tolist()
    [[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]]
    """
    _check_n_prev(n_prev)
    out = np.zeros_like(windows)
    for i in range(1, len(windows)):
        out[i] = windows[i] - np.median(windows[max(0, i - n_prev) : i], axis=0)
    return out


class TemplateTracker:
    """Streaming :func:`template_channel`: same numbers, fed beat windows as they come.

    Keeps only the last ``n_prev`` windows, so memory does not grow with the stream.

    Parameters
    ----------
    n_prev : int
        Number of previous windows in the running median template (>= 1).

    Examples
    --------
    >>> t = TemplateTracker(n_prev=2)
    >>> t.push(np.ones((3, 4))).tolist()[0]
    [0.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, n_prev: int = TEMPLATE_BEATS) -> None:
        _check_n_prev(n_prev)
        self.n_prev = n_prev
        self._recent: deque[npt.NDArray[np.float64]] = deque(maxlen=n_prev)

    def push(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Template channel of the next windows of the stream.

        Parameters
        ----------
        windows : ndarray, shape (n, L)
            The next normalised beat windows, in time order (``n`` may be 0).

        Returns
        -------
        ndarray, shape (n, L), float64
        """
        out = np.zeros_like(windows, dtype=np.float64)
        for i, window in enumerate(np.asarray(windows, dtype=np.float64)):
            if self._recent:
                out[i] = window - np.median(np.stack(self._recent), axis=0)
            self._recent.append(window)
        return out

    def reset(self) -> None:
        """Forget the stream (a new wearer, lead or sampling rate)."""
        self._recent.clear()


def _check_n_prev(n_prev: int) -> None:
    if n_prev < 1:
        raise ValueError(f"n_prev must be >= 1, got {n_prev}")
