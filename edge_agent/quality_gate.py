"""Signal-quality gate between beat classification and everything that reports beats (pure).

The rhythm monitor judges every stretch of the stream (10 s segments) readable or not with the
rhythm model's noisy class (``edge_agent.rhythm``). Beats wait here until the stretch holding
their R peak has been judged; then they go on to the event detectors, the buffer and the uplink:

- in a readable stretch unchanged (marked ``in_af`` where the rhythm model calls it atrial
  fibrillation: the buffer keeps the mark with the beat's label for personalisation);
- in an unreadable one as ``Q`` (unclassifiable) with no RR interval, so that no beat class, no
  V/S run, no heart-rate alarm and no RR-based AF comes from noise, and the patient's page (which
  says "signal too noisy" when most recent beats are Q, ``web.patient_view``) says so;
- with ``s_in_af_as_n`` (a patient in permanent AF), in one the rhythm model calls atrial
  fibrillation, an ``S`` as ``N``: beats conducted in AF are normal in the AAMI classes
  (MIT-BIH annotates them N), and the beat model's RR evidence cannot tell an irregular AF beat
  from a premature one. Off by default: the rhythm model also calls some stretches of frequent
  atrial ectopy AF (docs/models.md, "No SVEB inside atrial fibrillation"). The personal head
  turns it on for a patient whose labelled beats confirm the AF calls (``s_in_af_confirmed``,
  :meth:`QualityGate.set_patient_rule`).

Nothing is dropped silently: each unreadable stretch becomes one ``unreadable_signal`` event
(from its first to its last beat) with the beats it held, how many the beat model called
ventricular and their rate, so the care team sees "unreadable for 40 s while the beat model saw
fast ventricular beats" (ventricular flutter or fibrillation can look like noise to a rhythm
model trained on handheld recordings; see docs/wrist_and_af.md).

Beats older than ``max_hold_s`` of stream behind the newest sample are released as they are
(a monitor that stopped judging must not hold the stream back), and :meth:`flush` releases
everything (end of stream, gap).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from common.types import BeatPrediction, Event, event_id
from edge_agent.pipeline import BeatBatch, concat_batches, empty_batch

_LOGGER = logging.getLogger(__name__)

UNREADABLE_CLASS = "Q"
VENTRICULAR = "V"
SUPRAVENTRICULAR, NORMAL = "S", "N"


@dataclass(frozen=True)
class Judgement:
    """The rhythm monitor's verdict on stream samples ``[start, end)``: unreadable (``noisy``),
    or readable and called atrial fibrillation (``af``)."""

    start: int
    end: int
    noisy: bool
    af: bool = False


class JudgementSink(Protocol):
    """What the rhythm monitor tells about the stream (the gate, or an evaluator's log)."""

    def judge(self, start: int, end: int, noisy: bool, af: bool = False) -> None: ...

    def seen(self, newest_sample: int, fs: float) -> None: ...


def judgement_at(judgements: Sequence[Judgement], sample: int) -> Judgement | None:
    """The judgement of a sample (None: not judged); a later judgement of it wins."""
    found = None
    for j in judgements:
        if j.start <= sample < j.end:
            found = j
    return found


def gated_label(label: str, judgement: Judgement | None, s_in_af_as_n: bool = False) -> str:
    """The class a beat is reported as under ``judgement`` (module docstring)."""
    if judgement is None:
        return label
    if judgement.noisy:
        return UNREADABLE_CLASS
    if s_in_af_as_n and judgement.af and label == SUPRAVENTRICULAR:
        return NORMAL
    return label


# The per-patient S-in-AF decision (docs/models.md, "The S-in-AF rule decided per patient"):
# set once before it ran, not tuned.
S_IN_AF_MIN_BEATS = 20  # about two 10 s stretches
S_IN_AF_MAX_S_SHARE = 0.05  # tolerates a mislabelled beat at a stretch's edge


def s_in_af_confirmed(labels: Sequence[str], in_af: Sequence[bool]) -> bool:
    """Whether a patient's labelled beats confirm the rhythm monitor's AF calls, so that
    ``s_in_af_as_n`` may act for them: at least :data:`S_IN_AF_MIN_BEATS` labelled beats lie in
    stretches called AF (``in_af``, one per label) and fewer than :data:`S_IN_AF_MAX_S_SHARE`
    of those are labelled S (in true AF the beats are N; in frequent atrial ectopy that the
    rhythm model took for AF, many are S)."""
    in_stretch = [lab for lab, af in zip(labels, in_af, strict=True) if af]
    if len(in_stretch) < S_IN_AF_MIN_BEATS:
        return False
    return in_stretch.count(SUPRAVENTRICULAR) < S_IN_AF_MAX_S_SHARE * len(in_stretch)


def gated_labels(
    samples: Sequence[int],
    labels: Sequence[str],
    judgements: Sequence[Judgement],
    s_in_af_as_n: bool = False,
) -> tuple[list[str], list[bool]]:
    """:func:`gated_label` of every beat (R-peak stream indices ``samples``), for evaluators
    that gate a stream's beats after it ended, and whether each lay in an unreadable stretch."""
    found = [judgement_at(judgements, s) for s in samples]
    out = [gated_label(c, j, s_in_af_as_n) for c, j in zip(labels, found, strict=True)]
    return out, [j is not None and j.noisy for j in found]


def af_flags(samples: Sequence[int], judgements: Sequence[Judgement]) -> list[bool]:
    """Whether each beat (R-peak stream indices ``samples``) lies in a readable stretch the
    rhythm monitor called AF."""
    found = [judgement_at(judgements, s) for s in samples]
    return [j is not None and not j.noisy and j.af for j in found]


@dataclass
class GateStats:
    """Counters: beats released, and those released as unreadable."""

    released: int = 0
    unreadable: int = 0
    s_in_af: int = 0  # S calls reported as N inside atrial fibrillation
    unjudged: int = 0  # released without a judgement (held too long, or flushed)


class QualityGate:
    """Hold beats until their stretch of signal is judged (module docstring).

    Parameters
    ----------
    max_hold_s : float
        Longest a beat waits, in s of stream behind the newest sample seen.
    s_in_af_as_n : bool
        Report S calls inside stretches judged AF as N (module docstring).

    The same rule is also set per patient by :meth:`set_patient_rule`, from the personal
    head in use (the patient's labelled beats confirmed the AF calls: ``s_in_af_confirmed``).
    """

    def __init__(
        self, client_id: str = "", max_hold_s: float = 40.0, s_in_af_as_n: bool = False
    ) -> None:
        self._cid = client_id
        self._max_hold_s = max_hold_s
        self._af_rule = s_in_af_as_n
        self._patient_rule = False
        self._stretch: list[BeatPrediction] = []  # the current unreadable stretch, as classified
        self._events: list[Event] = []
        self._beats: list[BeatPrediction] = []
        self._batch: BeatBatch = empty_batch()
        self._spans: list[Judgement] = []
        self._judged_to = 0  # stream index up to which everything is judged
        self._newest = 0
        self._fs = 0.0
        self.stats = GateStats()

    def judge(self, start: int, end: int, noisy: bool, af: bool = False) -> None:
        """The rhythm monitor's judgement of stream samples ``[start, end)`` (``af``: the
        rhythm model calls the stretch atrial fibrillation: its readable beats are released
        with ``in_af``, and the S-in-AF rule acts there when it is on)."""
        self._spans.append(Judgement(start, end, noisy, af))
        self._judged_to = max(self._judged_to, end)

    @property
    def s_in_af_as_n(self) -> bool:
        """Whether S calls in stretches judged AF are reported N now (the edge setting or this
        patient's personal head)."""
        return self._af_rule or self._patient_rule

    @property
    def patient_rule(self) -> bool:
        """Whether the S-in-AF rule is on for this patient (:meth:`set_patient_rule`)."""
        return self._patient_rule

    def set_patient_rule(self, on: bool) -> bool:
        """Report S calls in stretches judged AF as N for this patient (the personal head's
        decision); True if that changed the rule. Called from the participant's thread: one
        bool assignment, read once per released beat."""
        changed, self._patient_rule = self._patient_rule != on, on
        return changed

    def seen(self, newest_sample: int, fs: float) -> None:
        """The stream has reached ``newest_sample`` at ``fs`` Hz (bounds the hold)."""
        self._newest, self._fs = max(self._newest, newest_sample), fs

    def hold(
        self, beats: list[BeatPrediction], batch: BeatBatch
    ) -> tuple[list[BeatPrediction], BeatBatch]:
        """Take new beats (and their model inputs); return those now released, in order."""
        if beats:
            aligned = len(batch) == len(beats) and len(self._batch) == len(self._beats)
            self._beats += beats
            # model inputs travel with their beats only while every held beat has them
            self._batch = concat_batches(self._batch, batch) if aligned else empty_batch()
        late = self._newest - round(self._max_hold_s * self._fs) if self._fs else -1
        n = 0
        while n < len(self._beats) and (
            self._beats[n].sample < self._judged_to or self._beats[n].sample < late
        ):
            n += 1
        return self._release(n)

    def flush(self) -> tuple[list[BeatPrediction], BeatBatch]:
        """Release every beat held (end of stream or a gap) and forget the judgements."""
        out = self._release(len(self._beats))
        self._close_stretch()
        self._spans, self._judged_to, self._newest = [], 0, 0
        return out

    def take_events(self) -> list[Event]:
        """The ``unreadable_signal`` events of the stretches ended so far (once each)."""
        out, self._events = self._events, []
        return out

    def _close_stretch(self) -> None:
        run, self._stretch = self._stretch, []
        if not run:
            return
        rr = [b.rr_s for b in run if math.isfinite(b.rr_s) and 0.1 <= b.rr_s <= 3.0]
        details: dict[str, float | int | str] = {
            "beats": len(run),
            "ventricular_beats": sum(b.label == VENTRICULAR for b in run),
        }
        if rr:
            details["rate_bpm"] = round(60.0 / float(np.median(rr)), 1)
        t0 = run[0].t_ns
        kind = "unreadable_signal"
        self._events.append(
            Event(event_id(self._cid, kind, t0), self._cid, kind, t0, run[-1].t_ns, details)
        )

    def _release(self, n: int) -> tuple[list[BeatPrediction], BeatBatch]:
        if n == 0:
            return [], empty_batch()
        beats, self._beats = self._beats[:n], self._beats[n:]
        batch = self._batch
        if len(batch) == len(beats) + len(self._beats):
            out_batch = BeatBatch(
                batch.samples[:n], batch.windows[:n], batch.rr[:n], batch.rr_s[:n]
            )
            self._batch = BeatBatch(
                batch.samples[n:], batch.windows[n:], batch.rr[n:], batch.rr_s[n:]
            )
        else:  # inputs were not kept for these beats
            out_batch, self._batch = empty_batch(), empty_batch()
        released = [self._gated(b) for b in beats]
        self.stats.released += n
        horizon = max((b.sample for b in beats), default=0)
        self._spans = [s for s in self._spans if s.end > horizon - 1]
        return released, out_batch

    def _gated(self, beat: BeatPrediction) -> BeatPrediction:
        judgement = judgement_at(self._spans, beat.sample)
        label = gated_label(beat.label, judgement, self.s_in_af_as_n)
        if judgement is None or not judgement.noisy:
            self.stats.unjudged += judgement is None
            self._close_stretch()
            self.stats.s_in_af += label != beat.label
            if judgement is not None and judgement.af:
                return replace(beat, label=label, in_af=True)
            return beat
        self.stats.unreadable += 1
        self._stretch.append(beat)
        return replace(beat, label=label, rr_s=float("nan"))
