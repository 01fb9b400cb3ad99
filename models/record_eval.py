"""Score the beat model on any WFDB folder through the edge agent's serving path.

Each record is replayed as the device would see it (``firmware_bridge`` WFDB replay, chunks of
``chunk_s`` seconds) into the edge's ``EcgPipeline`` with the card's streaming featurizer
(causal filter, QRS detector, beat windows, RR features, template channel) and the
``OnnxBeatClassifier``, and into its rhythm monitor, whose judgements the quality gate applies
(``models.record_gate``): nothing here re-implements detection or classification. Detected beats
are paired one to one with the reference beat annotations within ``tolerance_s`` (EC57 bxb,
``common.signals.match_peaks``) and the pairs' classes (MIT-BIH symbols -> AAMI,
``edge_agent.annotations.AAMI``) fill one confusion matrix per record. ``models.record_report``
turns those into gross, per-record and record-bootstrap figures.

With ``personalise_min`` the device's own protocol runs on each record
(``models.record_personalise``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import MedchainError
from common.signals.matching import match_peaks
from edge_agent.annotations import AAMI
from edge_agent.app import make_featurizer, rhythm_monitor
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.pipeline import BeatBatch, EcgPipeline, concat_batches, empty_batch
from edge_agent.quality_gate import Judgement
from edge_agent.rhythm import OnnxRhythmScorer
from models.record_checks import (
    DETECTION_FLAG_BELOW,
    FLAT_EXCLUDE_SHARE,
    annotation_problem,
    detection_problem,
    signal_flags,
)
from models.record_files import choose_lead, list_records, signal_names
from models.record_gate import JudgementLog, gate_stream, rhythm_scorer

_LOGGER = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RecordRequest:
    """How to read and score the records of one folder.

    Attributes
    ----------
    leads : tuple of str, optional
        Lead names in order of preference; a record uses the first it has. None: the card's
        lead (its first word, ``MLII``) if the record has it, else its first signal.
    annotator : str
        Annotation file extension (``atr``).
    tolerance_s : float
        Largest |detected - reference| of a matched beat, s (EC57: 0.15).
    personalise_min : float, optional
        Minutes of labelled beats at the start of each record for the personal head.
    chunk_s : float
        Replay chunk length, s (results do not depend on it beyond float rounding).
    rhythm : bool
        Run the edge's rhythm monitor and quality gate on the stream (the model the edge would
        load, or ``rhythm_model``): beats of unreadable stretches become Q, S calls inside AF
        N with ``s_in_af_as_n`` (``edge_agent.quality_gate``). False: the beat model's classes
        as they are.
    rhythm_model : Path, optional
        The rhythm model to use instead of the edge's default.
    s_in_af_as_n : bool
        The gate reports S calls inside AF as N (the edge's ``s_in_af_as_n``).
    patient_s_in_af : bool
        With ``personalise_min``: the personalisation decides ``s_in_af_as_n`` for the patient
        from the labelled beats in stretches called AF (``edge_agent.quality_gate.
        s_in_af_confirmed``), as the device does.
    """

    leads: tuple[str, ...] | None = None
    annotator: str = "atr"
    tolerance_s: float = 0.15
    personalise_min: float | None = None
    chunk_s: float = 10.0
    rhythm: bool = True
    rhythm_model: Path | None = None
    s_in_af_as_n: bool = False
    patient_s_in_af: bool = True


@dataclass
class RecordOutcome:
    """One record's counts (``confusion[reference, predicted]`` in the model's classes)."""

    name: str
    lead: str = ""
    fs: float = 0.0
    duration_s: float = 0.0
    reference_beats: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    confusion: I64 = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    missed: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    flags: dict[str, Any] = field(default_factory=dict)
    excluded: str = ""  # why the record is left out of the figures ("" = scored)
    personal: dict[str, Any] = field(default_factory=dict)  # confusions of the protocol
    gated_beats: dict[str, int] = field(default_factory=dict)  # relabelled by the quality gate


@dataclass(frozen=True)
class Stream:
    """What the serving path produced for one record (``predicted``: after the quality gate;
    ``judgements``: the rhythm monitor's, to gate beats classified again)."""

    samples: I64
    predicted: I64
    batch: BeatBatch
    signal: npt.NDArray[np.float64]
    fs: float
    judgements: tuple[Judgement, ...] = ()
    gated_beats: dict[str, int] = field(default_factory=dict)


def stream_record(
    record: Path,
    lead: str,
    clf: OnnxBeatClassifier,
    request: RecordRequest,
    scorer: OnnxRhythmScorer | None = None,
) -> tuple[Stream, tuple[I64, list[str]]]:
    """Replay one lead of a record through the edge pipeline (and, with ``scorer``, its rhythm
    monitor and quality gate); also its annotations."""
    from firmware_bridge.replay import WfdbReplaySource

    async def run() -> tuple[Stream, tuple[I64, list[str]]]:
        src = WfdbReplaySource(record, channels=[lead], speed=None, chunk_s=request.chunk_s)
        pipeline = EcgPipeline(record.name, make_featurizer(clf.card), clf)
        log = JudgementLog()
        monitor = None if scorer is None else rhythm_monitor(record.name, scorer, log)
        samples: list[int] = []
        labels: list[str] = []
        batch = empty_batch()
        parts: list[npt.NDArray[np.float64]] = []
        async with src:
            annotations = src.annotations(request.annotator)
            async for chunk in src.chunks():
                parts.append(chunk.samples[:, 0])
                if monitor is not None:
                    monitor.process(chunk, [])
                res = pipeline.process(chunk)
                samples += [b.sample for b in res.beats]
                labels += [b.label for b in res.beats]
                batch = concat_batches(batch, res.batch)
            res = pipeline.flush()
            samples += [b.sample for b in res.beats]
            labels += [b.label for b in res.beats]
            batch = concat_batches(batch, res.batch)
            fs = src.fs
            if monitor is not None:
                monitor.flush()
        index = {c: i for i, c in enumerate(clf.classes)}
        at = np.asarray(samples, np.int64)
        raw = np.asarray([index[c] for c in labels], np.int64)
        gated, counts = gate_stream(at, raw, clf.classes, log.log, request.s_in_af_as_n)
        signal = np.concatenate(parts) if parts else np.zeros(0)
        stream = Stream(at, gated, batch, signal, fs, tuple(log.log), counts)
        return stream, annotations

    return asyncio.run(run())


def _reference(annotations: tuple[I64, list[str]], classes: Sequence[str]) -> tuple[I64, I64]:
    """Reference beat positions and class indices (AAMI symbols the model's classes know)."""
    pos, symbols = annotations
    index = {c: i for i, c in enumerate(classes)}
    keep = [i for i, s in enumerate(symbols) if AAMI.get(s) in index]
    return (
        np.asarray(pos, np.int64)[keep],
        np.asarray([index[AAMI[symbols[i]]] for i in keep], np.int64),
    )


def confusion_of(
    ref_cls: I64, predicted: I64, pairs: tuple[I64, I64], keep: npt.NDArray[np.bool_], k: int
) -> I64:
    """``cm[reference, predicted]`` of the matched pairs whose reference beat is in ``keep``."""
    det, ref = pairs
    use = keep[ref]
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (ref_cls[ref[use]], predicted[det[use]]), 1)
    return cm


def evaluate_record(
    folder: Path,
    name: str,
    clf: OnnxBeatClassifier,
    request: RecordRequest,
    global_head: dict[str, npt.NDArray[np.float32]] | None = None,
    scorer: OnnxRhythmScorer | None = None,
) -> RecordOutcome:
    """Score one record; a record that cannot be scored says why in ``excluded``."""
    out = RecordOutcome(name)
    k = len(clf.classes)
    try:
        names = signal_names(folder / name)
        lead = choose_lead(names, request.leads, clf.card.input_contract.lead)
        if lead is None:
            wanted = "/".join(request.leads or ())
            out.excluded = f"no lead {wanted} (leads: {', '.join(names) or 'none'})"
            return out
        out.lead = lead
        stream, annotations = stream_record(folder / name, lead, clf, request, scorer)
    except MedchainError as exc:
        out.excluded = str(exc)
        return out
    out.fs, out.duration_s = stream.fs, stream.signal.size / stream.fs
    out.gated_beats = stream.gated_beats
    ref, ref_cls = _reference(annotations, clf.classes)
    out.reference_beats = int(ref.size)
    out.flags = signal_flags(stream.signal, stream.fs)
    problem = annotation_problem(ref, stream.signal.size, stream.fs)
    if not problem and out.flags.get("flat_line", 0.0) > FLAT_EXCLUDE_SHARE:
        problem = f"flat line over {100 * out.flags['flat_line']:.0f} % of the record"
    m = match_peaks(stream.samples, ref, round(request.tolerance_s * stream.fs))
    if not problem and stream.samples.size:
        offsets = stream.samples[m.matched_detected] - ref[m.matched_reference]
        problem = detection_problem(m.sensitivity, (1000.0 * offsets / stream.fs).astype(float))
    elif not problem:
        problem = "no beat detected"
    if problem:
        out.excluded = problem
        return out
    if min(m.sensitivity, m.positive_predictivity) < DETECTION_FLAG_BELOW:
        out.flags["beat_detection"] = {
            "se": round(m.sensitivity, 4),
            "ppv": round(m.positive_predictivity, 4),
        }
    out.tp, out.fp, out.fn = m.tp, m.fp, m.fn
    pairs = (m.matched_detected, m.matched_reference)
    everything = np.ones(ref.size, bool)
    out.confusion = confusion_of(ref_cls, stream.predicted, pairs, everything, k)
    unmatched = np.setdiff1d(np.arange(ref.size), m.matched_reference)
    out.missed = np.bincount(ref_cls[unmatched], minlength=k).astype(np.int64)
    if request.personalise_min is not None:
        from models.record_personalise import personalise_record

        out.personal = personalise_record(
            stream, annotations, (ref, ref_cls), pairs, clf, request, global_head
        )
    return out


def evaluate_folder(
    folder: Path,
    model: Path,
    request: RecordRequest,
    only: Sequence[str] | None = None,
) -> tuple[OnnxBeatClassifier, list[RecordOutcome], OnnxRhythmScorer | None]:
    """Every annotated record of ``folder`` through the serving path (see module doc).

    Raises
    ------
    MedchainError
        One line: missing folder/model, no annotated record, no record has the lead, or no
        record could be scored.
    """
    names = list_records(folder, request.annotator, only)
    from models.record_personalise import load_head

    clf = OnnxBeatClassifier(model)
    head = load_head(model, clf) if request.personalise_min is not None else None
    scorer = rhythm_scorer(request.rhythm, request.rhythm_model, clf.classes, request.s_in_af_as_n)
    outcomes = []
    for name in names:
        out = evaluate_record(folder, name, clf, request, head, scorer)
        if out.excluded:
            _LOGGER.info("record %s not scored: %s", name, out.excluded)
        outcomes.append(out)
    if all(o.excluded for o in outcomes):
        reasons = sorted({o.excluded for o in outcomes})
        raise MedchainError(
            f"no record of {folder} could be scored ({len(outcomes)} tried): "
            + "; ".join(reasons[:3])
            + (" ..." if len(reasons) > 3 else "")
        )
    return clf, outcomes, scorer
