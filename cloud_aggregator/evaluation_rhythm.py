"""Server-side evaluation of whole-model rhythm releases on held-out recordings.

Every round's candidate is scored as a device serves it: the release's int8 ONNX on each
recording's windows, their probabilities averaged, the arg-max is the recording's rhythm. The
flat metrics carry the per-class Se/+P/F1 the release gate reads (``se_<class>``) and, as
``macro_f1``, the CinC 2017 score (mean F1 of N, AF and O: the noisy class is predicted but not
scored, as in the challenge), so the gate and ``better`` compare what the challenge ranks by.
"""

from __future__ import annotations

import numpy as np

from cloud_aggregator.evaluation import summary_metrics
from common.fl_protocol import ModelRelease
from models.rhythm_data import WindowBank
from models.rhythm_metrics import cinc_mean_f1, f1_score
from models.rhythm_scoring import onnx_window_probs, record_probabilities
from models.tasks.rhythm import CLASSES


class RhythmEvaluator:
    """Scores releases on the full windows of ``bank`` (one decision per recording).

    Parameters
    ----------
    bank : WindowBank
        Held-out recordings (e.g. one fold of the CinC 2017 CV).
    """

    def __init__(self, bank: WindowBank) -> None:
        self.bank = bank
        self.idx = np.flatnonzero(~bank.short).astype(np.int64)
        self.recordings = int(np.unique(bank.records[self.idx]).size)

    def __call__(self, release: ModelRelease) -> dict[str, float]:
        """Flat metrics of the release's int8 model (``macro_f1`` = CinC mean F1)."""
        probs = onnx_window_probs(release.files["model.onnx"], self.bank, self.idx)
        _, rec_probs, labels = record_probabilities(self.bank, probs, self.idx)
        predicted = rec_probs.argmax(axis=1).astype(np.int64)
        out = summary_metrics(labels, predicted, CLASSES)
        out["macro_f1_all"] = out["macro_f1"]
        out["macro_f1"] = out["cinc_mean_f1"] = cinc_mean_f1(labels, predicted, CLASSES)
        out["af_f1"] = f1_score(labels, predicted, CLASSES.index("AF"))
        out["recordings"] = float(labels.size)
        return out
