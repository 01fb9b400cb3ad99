"""Clinical events from the stream of classified beats (pure).

Three detectors, each fed every beat in order and able to ``flush`` an open episode at the
end of a stream:

- ``VtRunDetector``: runs of >= ``min_beats`` consecutive ventricular beats (``vt_run``;
  3 or more VEBs in a row is the usual definition of a ventricular-tachycardia salvo/run).
- ``HeartRateDetector``: bradycardia / tachycardia from the median of the last RR intervals,
  with hysteresis (enter below ``brady_bpm``/above ``tachy_bpm``, leave only once the rate has
  recovered by ``hysteresis_bpm``) and a minimum duration, so the alarm does not chatter.
- ``AfDetector`` (``edge_agent.af_events``): suspected AF episodes from RR irregularity over a
  sliding window of normal-morphology intervals, or from an injected rhythm-model score.

Event ids are derived from (client, kind, start time) (``common.types.event_id``), so
re-processing the same data yields the same ids and the uplink stays idempotent.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from common.types import BeatPrediction, Event, event_id
from edge_agent.af_events import AfDetector, AfScorer, Episode, rr_irregularity

VENTRICULAR = "V"
UNCLASSIFIED = "Q"
VT_RATE_BPM = 100.0  # ventricular tachycardia: consecutive ventricular beats faster than this
_NS = 1_000_000_000


class VtRunDetector:
    """Runs of consecutive ventricular beats.

    A run that already has ``min_beats`` beats also continues through ``Q`` beats as fast as VT
    (RR at most ``60 / continue_bpm`` s): the beat model's template veto serves a VEB as Q once
    a sustained run has become the wearer's running template (models/template_veto.py), which
    would otherwise cut a 100-beat VT to its first 10 beats. A Q beat never starts a run, and
    a slower one ends it, so the wearer's own usual beats served as Q cannot make one.

    Parameters
    ----------
    min_beats : int
        Shortest run reported (3 = VT salvo).
    continue_bpm : float
        Rate (bpm) a Q beat must reach to continue a run (VT is faster than 100 bpm).
    """

    def __init__(
        self, client_id: str, min_beats: int = 3, continue_bpm: float = VT_RATE_BPM
    ) -> None:
        self._client_id = client_id
        self._min = min_beats
        self._max_rr_s = 60.0 / continue_bpm
        self._run: list[BeatPrediction] = []

    def update(self, beat: BeatPrediction) -> list[Event]:
        """Feed one beat; returns the run that this beat ended, if long enough."""
        continues = (
            beat.label == UNCLASSIFIED
            and len(self._run) >= self._min
            and beat.rr_s <= self._max_rr_s  # False for NaN
        )
        if beat.label == VENTRICULAR or continues:
            self._run.append(beat)
            return []
        return self.flush()

    def flush(self) -> list[Event]:
        """End the current run (end of stream or a gap)."""
        run, self._run = self._run, []
        if len(run) < self._min:
            return []
        span_s = (run[-1].t_ns - run[0].t_ns) / _NS
        rate = 60.0 * (len(run) - 1) / span_s if span_s > 0 else float("nan")
        details: dict[str, float | int | str] = {"beats": len(run)}
        served_q = sum(b.label == UNCLASSIFIED for b in run)
        if served_q:
            details["q_beats"] = served_q
        if math.isfinite(rate):
            details["rate_bpm"] = round(rate, 1)
        t0 = run[0].t_ns
        return [
            Event(
                event_id(self._client_id, "vt_run", t0),
                self._client_id,
                "vt_run",
                t0,
                run[-1].t_ns,
                details,
            )
        ]


class HeartRateDetector:
    """Bradycardia and tachycardia with hysteresis.

    Parameters
    ----------
    brady_bpm, tachy_bpm : float
        Entry thresholds, bpm.
    hysteresis_bpm : float
        The rate must come back by this margin (bpm) inside the normal band to end an episode.
    window_beats : int
        RR intervals in the median that defines the current rate.
    min_duration_s : float
        Shorter episodes are discarded (artefacts, single pauses), s.
    """

    def __init__(
        self,
        client_id: str,
        brady_bpm: float = 50.0,
        tachy_bpm: float = 100.0,
        hysteresis_bpm: float = 5.0,
        window_beats: int = 8,
        min_duration_s: float = 10.0,
    ) -> None:
        self._client_id = client_id
        self._brady = brady_bpm
        self._tachy = tachy_bpm
        self._hyst = hysteresis_bpm
        self._rr: deque[float] = deque(maxlen=window_beats)
        self._min_ns = int(min_duration_s * _NS)
        self._kind: str | None = None
        self._episode: Episode | None = None

    @property
    def rate_bpm(self) -> float:
        """Current rate (median of the window), bpm; NaN until the window is full."""
        if len(self._rr) < (self._rr.maxlen or 1):
            return float("nan")
        return 60.0 / float(np.median(np.fromiter(self._rr, float)))

    def update(self, beat: BeatPrediction) -> list[Event]:
        """Feed one beat; returns an episode that just ended, if it lasted long enough."""
        if not (math.isfinite(beat.rr_s) and 0.2 <= beat.rr_s <= 3.0):
            return []
        self._rr.append(beat.rr_s)
        hr = self.rate_bpm
        if not math.isfinite(hr):
            return []
        if self._episode is None:
            kind = (
                "bradycardia" if hr < self._brady else "tachycardia" if hr > self._tachy else None
            )
            if kind is not None:
                self._kind, self._episode = kind, Episode(beat.t_ns, hr)
            return []
        ended = (self._kind == "bradycardia" and hr >= self._brady + self._hyst) or (
            self._kind == "tachycardia" and hr <= self._tachy - self._hyst
        )
        if ended:
            return self.flush()
        self._episode.add(beat.t_ns, hr)
        return []

    def flush(self) -> list[Event]:
        """Close the open episode (end of stream)."""
        ep, kind = self._episode, self._kind
        self._episode, self._kind = None, None
        if ep is None or kind is None or ep.t_last_ns - ep.t_start_ns < self._min_ns:
            return []
        details: dict[str, float | int | str] = {
            "min_bpm": round(ep.lo, 1),
            "max_bpm": round(ep.hi, 1),
            "beats": ep.beats + 1,
        }
        return [
            Event(
                event_id(self._client_id, kind, ep.t_start_ns),
                self._client_id,
                kind,
                ep.t_start_ns,
                ep.t_last_ns,
                details,
            )
        ]


class BeatEventDetector:
    """All beat-driven detectors together, fed in stream order."""

    def __init__(
        self,
        client_id: str,
        *,
        vt_min_beats: int = 3,
        brady_bpm: float = 50.0,
        tachy_bpm: float = 100.0,
        hysteresis_bpm: float = 5.0,
        af_window_beats: int = 30,
        af_scorer: AfScorer = rr_irregularity,
        rr_af: bool = True,
    ) -> None:
        self.vt = VtRunDetector(client_id, vt_min_beats)
        self.hr = HeartRateDetector(client_id, brady_bpm, tachy_bpm, hysteresis_bpm)
        # off when the rhythm model (edge_agent.rhythm) reports AF instead
        self.af = AfDetector(client_id, af_window_beats, scorer=af_scorer) if rr_af else None

    def update(self, beats: Sequence[BeatPrediction]) -> list[Event]:
        """Feed a batch of beats in order; returns the events they completed."""
        out: list[Event] = []
        for b in beats:
            out += self.vt.update(b)
            out += self.hr.update(b)
            if self.af is not None:
                out += self.af.update(b)
        return out

    def flush(self) -> list[Event]:
        """Close every open episode (end of stream or a gap in the signal)."""
        return self.vt.flush() + self.hr.flush() + (self.af.flush() if self.af else [])
