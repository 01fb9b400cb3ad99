"""The edge's rhythm monitor and quality gate in a record evaluation (``models.record_eval``).

A record is replayed into the edge's ``RhythmMonitor`` (built as the edge builds it,
``edge_agent.app.rhythm_monitor``) beside its beat pipeline. The monitor's judgements of each
10 s stretch (readable or not, AF or not) are kept here and applied to the record's beats once
the stream has ended, with the gate's own per-beat rule (``edge_agent.quality_gate.
gated_labels``), so beats classified again after the stream (the personalised protocol's
personal head) are reported as the device would report them. This equals the live gate because
a gapless replay has every beat judged long before the gate's hold limit (40 s) would release
it unjudged (``tests/models/test_record_eval.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError, DataNotFoundError
from edge_agent.quality_gate import (
    NORMAL,
    SUPRAVENTRICULAR,
    UNREADABLE_CLASS,
    Judgement,
    gated_labels,
)
from edge_agent.rhythm import OnnxRhythmScorer

I64 = npt.NDArray[np.int64]


class JudgementLog:
    """Keeps every judgement of the rhythm monitor (a ``JudgementSink``)."""

    def __init__(self) -> None:
        self.log: list[Judgement] = []

    def judge(self, start: int, end: int, noisy: bool, af: bool = False) -> None:
        """Keep the judgement of stream samples ``[start, end)``."""
        self.log.append(Judgement(start, end, noisy, af))

    def seen(self, newest_sample: int, fs: float) -> None:
        """Nothing is held here, so the stream's progress does not matter."""


def gate_stream(
    samples: I64,
    predicted: I64,
    classes: Sequence[str],
    judgements: Sequence[Judgement],
    s_in_af_as_n: bool,
) -> tuple[I64, dict[str, int]]:
    """Class indices ``(n,)`` of beats at R-peak stream indices ``samples`` ``(n,)`` as the
    edge's quality gate reports them, and its counts (``unreadable``: beats of unreadable
    stretches, as the edge's ``GateStats`` counts them; ``s_in_af``: S reported N)."""
    if not judgements:
        return predicted, {"unreadable": 0, "s_in_af": 0}
    index = {c: i for i, c in enumerate(classes)}
    before = [classes[int(p)] for p in predicted]
    names, noisy = gated_labels(samples.tolist(), before, judgements, s_in_af_as_n)
    moved = sum(a != b and b == NORMAL for a, b in zip(before, names, strict=True))
    counts = {"unreadable": int(sum(noisy)), "s_in_af": int(moved)}
    return np.asarray([index[c] for c in names], np.int64), counts


def rhythm_scorer(
    rhythm: bool, model: Path | None, beat_classes: Sequence[str], s_in_af_as_n: bool
) -> OnnxRhythmScorer | None:
    """The rhythm model the edge would load (or ``model``); None without ``rhythm``.

    Raises
    ------
    ConfigError
        ``s_in_af_as_n`` without ``rhythm``; a rhythm model without the noisy class (a v1 model:
        the edge runs no quality gate with it); beat classes without Q (or N and S for
        ``s_in_af_as_n``) to report gated beats as.
    DataNotFoundError
        If there is no rhythm model.
    """
    if not rhythm:
        if s_in_af_as_n:
            raise ConfigError("--s-in-af-as-n needs the rhythm model (not --rhythm-model none)")
        return None
    from edge_agent.app import DEFAULT_RHYTHM, judges_quality, rhythm_model_path
    from edge_agent.config import EdgeSettings

    needed = {UNREADABLE_CLASS} | ({NORMAL, SUPRAVENTRICULAR} if s_in_af_as_n else set())
    if missing := sorted(needed - set(beat_classes)):
        raise ConfigError(
            f"the beat model has no class {', '.join(missing)} for the quality gate's beats; "
            "use --rhythm-model none"
        )
    path = rhythm_model_path(EdgeSettings(rhythm_model_path=model))
    if path is None:
        raise DataNotFoundError("a rhythm model", str(DEFAULT_RHYTHM.parent))
    scorer = OnnxRhythmScorer(path)
    if not judges_quality(scorer):
        raise ConfigError(
            f"rhythm model {path.name} has no 'noisy' class: no quality gate "
            "(--rhythm-model none scores the beat model alone)"
        )
    return scorer
