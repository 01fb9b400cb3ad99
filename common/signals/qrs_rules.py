"""Decision rules of the QRS detector: adaptive thresholds, T-wave rejection, search-back.

Pure bookkeeping over time-ordered candidates ``(sample, height)`` of the integrated QRS energy
signal; the signal itself stays in :class:`common.signals.peaks.QRSDetector`, reached through
the small :class:`SignalAccess` port (slope and R-peak refinement at a candidate).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QRSParams:
    """Tuning of the QRS detector (seconds and Hz; independent of the sampling rate).

    Attributes
    ----------
    band_hz : (float, float)
        QRS band-pass corners in Hz.
    integration_s : float
        Moving-window integration length in s (about the widest QRS).
    refractory_s : float
        No two QRS closer than this; also the look-ahead that makes a candidate final.
    learning_s : float
        Initial learning period in s (peaks found in it are emitted when it ends).
    threshold_ratio : float
        Position of the threshold between the noise and QRS peak levels (0-1).
    history : int
        Number of recent QRS and noise peaks that set the levels (mean of the QRS heights,
        median of the noise heights).
    twave_s, twave_slope_ratio : float
        A candidate within ``twave_s`` of the previous QRS whose maximum slope is below
        ``twave_slope_ratio`` times that QRS's slope is a T wave.
    searchback_rr_factor : float
        Search-back starts after this many running-average RR intervals without a QRS.
    searchback_min_s : float
        Search-back candidates must be at least this long after the previous QRS.
    searchback_threshold_ratio : float
        Fraction of the threshold a search-back candidate must exceed in the first window.
    searchback_decay, searchback_floor_ratio : float
        Each further empty search-back window multiplies that fraction by ``searchback_decay``,
        down to ``searchback_floor_ratio``.
    searchback_slope_ratio : float
        A search-back candidate also needs a maximum slope of at least this fraction of the
        median slope of the recent QRS complexes (0 disables the check); it decays with
        ``searchback_decay`` like the threshold.
    max_searchback_s : float
        Upper bound of the search-back interval in s (bounds latency and memory).
    refine_before_s, refine_after_s : float
        R-peak refinement window in s before and after the QRS energy centre (the R wave of
        wide complexes comes before their energy centre).
    """

    band_hz: tuple[float, float] = (5.0, 15.0)
    integration_s: float = 0.15
    refractory_s: float = 0.2
    learning_s: float = 2.0
    threshold_ratio: float = 0.25
    history: int = 8
    twave_s: float = 0.36
    twave_slope_ratio: float = 0.4
    searchback_rr_factor: float = 1.66
    searchback_min_s: float = 0.36
    searchback_threshold_ratio: float = 0.5
    searchback_decay: float = 0.5
    searchback_slope_ratio: float = 0.3
    searchback_floor_ratio: float = 0.3
    max_searchback_s: float = 3.0
    refine_before_s: float = 0.07
    refine_after_s: float = 0.04

    def __post_init__(self) -> None:
        if not 0 < self.threshold_ratio < 1 or not 0 < self.searchback_threshold_ratio <= 1:
            raise ValueError("threshold ratios must be in (0, 1)")
        if self.history < 1 or self.refractory_s <= 0 or self.integration_s <= 0:
            raise ValueError("history, refractory_s and integration_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (for reports)."""
        return asdict(self)


def _median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


class SignalAccess(Protocol):
    """What the rules need from the signal around a candidate (absolute sample index)."""

    def peak_slope(self, cand: int) -> float:
        """Largest absolute slope of the band-passed ECG around the candidate's QRS."""
        ...

    def refine_peak(self, cand: int) -> int:
        """R-peak sample of the candidate's QRS."""
        ...

    def max_energy(self, start: int, stop: int) -> float:
        """Largest integrated energy in ``[start, stop)``."""
        ...


class QRSRules:
    """Classify candidates in time order; returns refined R peaks as they become final."""

    def __init__(self, params: QRSParams, sampling_rate: float, signal: SignalAccess) -> None:
        fs = float(sampling_rate)
        self.params = params
        self._signal = signal
        self._fs = fs
        self._learn = round(params.learning_s * fs)
        self._refractory = round(params.refractory_s * fs)
        self._twave = round(params.twave_s * fs)
        self._sb_min = round(params.searchback_min_s * fs)
        self._sb_max = round(params.max_searchback_s * fs)
        self.initialised = False
        self._held: list[tuple[int, float]] = []
        self._qrs_levels: deque[float] = deque(maxlen=params.history)
        self._noise_levels: deque[tuple[int, float]] = deque(maxlen=params.history)
        self._rr: deque[int] = deque(maxlen=params.history)
        self._slopes: deque[float] = deque(maxlen=params.history)
        self._last: int | None = None
        self._last_slope = 0.0
        self._last_out = -1
        self._sb_failed = 0  # search-back windows found empty since the last QRS
        self._since: list[tuple[int, float]] = []  # sub-threshold candidates since the last QRS

    @property
    def learning_samples(self) -> int:
        """Length of the learning period in samples."""
        return self._learn

    def _threshold(self) -> float:
        # Mean of the QRS heights follows a real drop in amplitude within a beat or two; the
        # median of the noise heights ignores the odd artefact.
        qrs = sum(self._qrs_levels) / len(self._qrs_levels) if self._qrs_levels else 0.0
        noise = _median(h for _, h in self._noise_levels) if self._noise_levels else 0.0
        return noise + self.params.threshold_ratio * (qrs - noise)

    def _searchback_interval(self) -> int:
        if not self._rr:
            return self._sb_max
        mean_rr = sum(self._rr) / len(self._rr)
        return min(round(self.params.searchback_rr_factor * mean_rr), self._sb_max)

    def _accept(self, cand: int, height: float, out: list[int]) -> None:
        if self._last is not None:
            # A pause (or beats missed for good) must not stretch the search-back interval.
            self._rr.append(min(cand - self._last, self._sb_max))
        self._sb_failed = 0
        self._qrs_levels.append(height)
        self._last = cand
        self._last_slope = self._signal.peak_slope(cand)
        self._slopes.append(self._last_slope)
        self._since = []
        # Refinement moves a peak by at most refine_s; keep the output strictly increasing.
        peak = max(self._signal.refine_peak(cand), self._last_out + 1)
        self._last_out = peak
        out.append(peak)

    def _searchback(self, now: int, out: list[int]) -> None:
        """Recover missed beats in the search-back windows that ended before ``now``.

        Window ``k`` after the last QRS spans ``(last + k*I, last + (k+1)*I]`` (``I`` the
        search-back interval; window 0 starts ``searchback_min_s`` after the QRS) and accepts
        candidates above ``searchback_threshold_ratio * searchback_decay**k`` times the
        threshold (floored at ``searchback_floor_ratio``), so that a long run of faint beats
        (amplifier recovery, electrode trouble) is picked up again within a few seconds.
        """
        p = self.params
        while self._last is not None:
            interval = self._searchback_interval()
            k = self._sb_failed
            horizon = self._last + (k + 1) * interval
            if now <= horizon:
                return
            start = self._last + (self._sb_min if k == 0 else k * interval)
            ratio = max(
                p.searchback_threshold_ratio * p.searchback_decay**k, p.searchback_floor_ratio
            )
            limit = ratio * self._threshold()
            pool = [(h, q) for q, h in self._since if start < q <= horizon and h > limit]
            if pool and self._slopes and p.searchback_slope_ratio > 0:
                # A narrow noise spike has energy but not the slope of this patient's QRS.
                # The check relaxes with the threshold so that a real drop in amplitude is
                # followed within a few windows.
                min_slope = p.searchback_slope_ratio * p.searchback_decay**k * _median(self._slopes)
                pool = [(h, q) for h, q in pool if self._signal.peak_slope(q) >= min_slope]
            if not pool:
                # Nothing in this window; forget it so it is not scanned again.
                self._since = [(q, h) for q, h in self._since if q > horizon]
                self._sb_failed += 1
                continue
            height, cand = max(pool)
            # It was a beat after all: its height no longer counts as noise.
            self._noise_levels = deque(
                (item for item in self._noise_levels if item[0] != cand), maxlen=p.history
            )
            self._since = [(q, h) for q, h in self._since if q > cand]
            self._accept(cand, height, out)

    def _initialise(self) -> None:
        second = round(self._fs)
        levels = [
            self._signal.max_energy(s, s + second)
            for s in range(0, max(self._learn - second, 0) + 1, second)
        ]
        if not any(v > 0 for v in levels):
            levels = [self._signal.max_energy(0, self._learn)]
        self._qrs_levels.extend(v for v in levels if v > 0)
        # Noise starts at zero, as in Hamilton & Tompkins: a few missed beats counted as noise
        # must not lift the threshold above the beats that follow them.
        self._noise_levels.extend((-1, 0.0) for _ in range(self.params.history))
        self.initialised = True

    def _classify(self, cand: int, height: float, out: list[int]) -> None:
        self._searchback(cand, out)
        if self._last is not None and cand - self._last < self._refractory:
            return
        if height > self._threshold():
            is_twave = (
                self._last is not None
                and cand - self._last < self._twave
                and self._signal.peak_slope(cand) < self.params.twave_slope_ratio * self._last_slope
            )
            if not is_twave:
                self._accept(cand, height, out)
                return
        self._noise_levels.append((cand, height))
        if self._last is not None:  # search-back needs a previous QRS; otherwise keep nothing
            self._since.append((cand, height))

    def advance(
        self, cands: list[tuple[int, float]], final_upto: int, final: bool = False
    ) -> list[int]:
        """Classify new candidates (all before ``final_upto``); returns the new R peaks.

        ``final`` marks the end of the stream: a learning period still running ends there.
        """
        out: list[int] = []
        if not self.initialised:
            self._held.extend(cands)
            if final_upto < self._learn and not final:
                return out
            self._initialise()
            cands, self._held = self._held, []
        for cand, height in cands:
            self._classify(cand, height, out)
        self._searchback(final_upto, out)
        return out
