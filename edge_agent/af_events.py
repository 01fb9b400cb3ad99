"""Suspected atrial fibrillation from the stream of classified beats (pure).

``AfDetector`` scores a sliding window of RR intervals of normal-morphology beats with
:func:`rr_irregularity` (or an injected rhythm-model score) and opens / closes ``af_episode``
events with hysteresis and a minimum duration. ``edge_agent.events.BeatEventDetector`` runs it
with the VT-run and heart-rate detectors.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from common.types import BeatPrediction, Event, event_id

_NS = 1_000_000_000


class Episode:
    """An open episode: start time and running statistics (the AF and heart-rate detectors)."""

    def __init__(self, t_start_ns: int, value: float) -> None:
        self.t_start_ns = t_start_ns
        self.t_last_ns = t_start_ns
        self.lo = value
        self.hi = value
        self.beats = 0

    def add(self, t_ns: int, value: float) -> None:
        self.t_last_ns = t_ns
        self.lo = min(self.lo, value)
        self.hi = max(self.hi, value)
        self.beats += 1


def rr_irregularity(rr_s: Sequence[float]) -> float:
    """AF score from RR intervals (s): median |successive difference| / median RR.

    The median makes it robust to the few large differences around isolated ectopic beats or a
    missed detection, which dominate RMSSD-type scores; sinus rhythm (even with respiratory
    sinus arrhythmia) stays below about 0.05, AF typically exceeds 0.1 (the MADSD feature of
    ``common.signals.rhythm.rr_irregularity``, used there for the rhythm model).
    """
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.size < 4:
        return float("nan")
    return float(np.median(np.abs(np.diff(rr))) / np.median(rr))


AfScorer = Callable[[Sequence[float]], float]


class AfDetector:
    """Suspected AF episodes from a window of RR intervals.

    Parameters
    ----------
    window_beats : int
        RR intervals scored together.
    enter, leave : float
        Score that opens / closes an episode (hysteresis: ``leave < enter``).
    scorer : callable
        RR intervals (s) -> score; :func:`rr_irregularity` by default, or a rhythm model.
    min_duration_s : float
        Shorter episodes are discarded, s.
    """

    def __init__(
        self,
        client_id: str,
        window_beats: int = 30,
        enter: float = 0.08,
        leave: float = 0.05,
        scorer: AfScorer = rr_irregularity,
        min_duration_s: float = 30.0,
    ) -> None:
        self._client_id = client_id
        self._rr: deque[float] = deque(maxlen=window_beats)
        self._enter = enter
        self._leave = leave
        self._score = scorer
        self._min_ns = int(min_duration_s * _NS)
        self._episode: Episode | None = None
        self._step = max(1, window_beats // 6)  # score every few beats, not every beat
        self._since = 0
        self._prev_normal = False

    def update(self, beat: BeatPrediction) -> list[Event]:
        """Feed one beat; only N-N intervals count (an ectopic beat's coupling interval and
        the compensatory pause after it are skipped), as in AF screening."""
        prev_normal, self._prev_normal = self._prev_normal, beat.label == "N"
        if not (prev_normal and self._prev_normal):
            return []
        if not (math.isfinite(beat.rr_s) and 0.2 <= beat.rr_s <= 3.0):
            return []
        self._rr.append(beat.rr_s)
        self._since += 1
        if len(self._rr) < (self._rr.maxlen or 1) or self._since < self._step:
            if self._episode is not None:
                self._episode.t_last_ns = beat.t_ns
            return []
        self._since = 0
        score = self._score(list(self._rr))
        if not math.isfinite(score):
            return []
        if self._episode is None:
            if score >= self._enter:
                # the irregular part of the triggering window is typically its newer half:
                # date the onset half a window back so it is neither late nor early by ~30 beats
                span_ns = int(sum(self._rr) * _NS / 2)
                self._episode = Episode(beat.t_ns - span_ns, score)
            return []
        if score < self._leave:
            return self.flush()
        self._episode.add(beat.t_ns, score)
        return []

    def flush(self) -> list[Event]:
        """Close the open episode (end of stream)."""
        ep, self._episode = self._episode, None
        if ep is None or ep.t_last_ns - ep.t_start_ns < self._min_ns:
            return []
        details: dict[str, float | int | str] = {"max_score": round(ep.hi, 3), "source": "rr"}
        return [
            Event(
                event_id(self._client_id, "af_episode", ep.t_start_ns),
                self._client_id,
                "af_episode",
                ep.t_start_ns,
                ep.t_last_ns,
                details,
            )
        ]
