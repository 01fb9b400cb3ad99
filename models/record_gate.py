"""The edge's rhythm monitor and quality gate in a record evaluation (``models.record_eval``).

A record is replayed into the edge's ``RhythmMonitor`` beside its beat pipeline, as on a device.
The monitor's judgements of each 10 s stretch (readable or not, AF or not) are kept here and
applied to the record's beats once the stream has ended, with the gate's own per-beat rule
(``edge_agent.quality_gate.gated_labels``), so beats classified again after the stream (the
personalised protocol's personal head) are reported as the device would report them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError, DataNotFoundError
from edge_agent.quality_gate import Judgement, QualityGate, gated_labels
from edge_agent.rhythm import OnnxRhythmScorer
from edge_agent.rhythm_verdict import UNREADABLE

I64 = npt.NDArray[np.int64]


class JudgementLog(QualityGate):
    """A gate that keeps every judgement of the rhythm monitor instead of holding beats.

    Parameters
    ----------
    s_in_af_as_n : bool
        Keep the AF verdicts (the edge setting ``s_in_af_as_n``); else they are dropped, as the
        edge's gate drops them.
    """

    def __init__(self, s_in_af_as_n: bool) -> None:
        super().__init__()
        self.log: list[Judgement] = []
        self._as_n = s_in_af_as_n

    def judge(self, start: int, end: int, noisy: bool, af: bool = False) -> None:
        """Keep the judgement of stream samples ``[start, end)``."""
        self.log.append(Judgement(start, end, noisy, af and self._as_n))


def gate_stream(
    samples: I64, predicted: I64, classes: Sequence[str], judgements: Sequence[Judgement]
) -> I64:
    """Class indices ``(n,)`` of beats at R-peak stream indices ``samples`` ``(n,)`` as the
    edge's quality gate reports them."""
    if not judgements:
        return predicted
    index = {c: i for i, c in enumerate(classes)}
    names = gated_labels(samples.tolist(), [classes[int(p)] for p in predicted], judgements)
    return np.asarray([index[c] for c in names], np.int64)


def rhythm_scorer(rhythm: bool, model: Path | None) -> OnnxRhythmScorer | None:
    """The rhythm model the edge would load (or ``model``); None without ``rhythm``.

    Raises
    ------
    DataNotFoundError
        If there is no rhythm model.
    ConfigError
        If it has no noisy class (a v1 model: the edge runs no quality gate with it).
    """
    if not rhythm:
        return None
    from edge_agent.app import DEFAULT_RHYTHM, rhythm_model_path
    from edge_agent.config import EdgeSettings

    path = rhythm_model_path(EdgeSettings(rhythm_model_path=model))
    if path is None:
        raise DataNotFoundError("a rhythm model", str(DEFAULT_RHYTHM.parent))
    scorer = OnnxRhythmScorer(path)
    if UNREADABLE not in scorer.classes:
        raise ConfigError(f"rhythm model {path.name} has no {UNREADABLE!r} class: no quality gate")
    return scorer
