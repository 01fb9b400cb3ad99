"""The global model's rhythm evidence, kept by a personal head (numpy only).

The shipped beat model decides N vs S by its RR gate (``input_contract.parameters.rr_gate``,
models/rr_gate.py): the net's ``N + S`` probability is re-split by

    q = sigmoid(z),  z = log(max(rr, floor)) @ weight + bias

A personal head (``edge_agent.personal_head``) is a linear softmax on the frozen backbone's
embedding, fitted on the patient's labelled beats. Alone it decides N vs S from those beats:
a patient with no SVEB in the labelled minutes gets a head that calls nearly nothing S, and the
rhythm evidence is lost (on an external database SVEB Se fell from 63 to 55 % after
personalising). :class:`RRSplit` keeps it: after the head's softmax,

    q'     = sigmoid(z - threshold)
    S'     = max(S, (N + S) q'),   N' = (N + S) - S'

so a beat is S when the head says so (what the patient's labelled SVEBs taught it) OR when its
rhythm is premature beyond every labelled normal beat of the patient (``threshold`` = the
largest ``z`` of the labelled N beats, at least 0: the global gate's own boundary). V, F and Q
keep the head's probabilities and rows still sum to 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
RR_FLOOR = 1e-3  # models.rr_gate.RR_FLOOR_S: log(0) guard, s / ratio


@dataclass(frozen=True)
class RRSplit:
    """The global RR gate as a rhythm expert beside a personal head.

    Attributes
    ----------
    weight : ndarray, shape (K,)
        Per log-RR-feature weight (the card's gate).
    bias : float
    n, s : int
        Columns of N and S in the head's probabilities.
    floor : float
        RR features are clipped to at least this before the log (s or ratio).
    threshold : float
        The patient's rhythm boundary on ``z`` (0 = the global gate's).
    """

    weight: F64
    bias: float
    n: int
    s: int
    floor: float = RR_FLOOR
    threshold: float = 0.0

    def logit(self, rr: npt.NDArray[Any]) -> F64:
        """``z``: the global gate's log-odds of S per beat, shape (N,)."""
        x = np.log(np.maximum(np.asarray(rr, np.float64), self.floor))
        out: F64 = x @ np.asarray(self.weight, np.float64) + self.bias
        return out

    def apply(self, probs: npt.NDArray[Any], rr: npt.NDArray[Any]) -> F32:
        """The head's probabilities (N, C) with S raised where the rhythm says S (see above)."""
        p = np.array(probs, np.float64, copy=True)
        z = np.clip(self.logit(rr) - self.threshold, -50.0, 50.0)
        q = 1.0 / (1.0 + np.exp(-z))
        ns = p[:, self.n] + p[:, self.s]
        s_new = np.maximum(p[:, self.s], ns * q)
        p[:, self.s] = s_new
        p[:, self.n] = ns - s_new
        return p.astype(np.float32)

    def personal(self, rr_normal: npt.NDArray[Any]) -> RRSplit:
        """This expert with the patient's threshold: the largest ``z`` of the labelled normal
        beats ``rr_normal`` (n, K), at least the current threshold."""
        if len(rr_normal) == 0:
            return self
        top = float(np.max(self.logit(rr_normal)))
        return replace(self, threshold=max(self.threshold, top)) if np.isfinite(top) else self

    @classmethod
    def from_card(cls, gate: Any) -> RRSplit | None:
        """The expert of a card's ``input_contract.parameters.rr_gate`` (None if absent or
        malformed; a V rhythm expert in it is not used)."""
        if not isinstance(gate, dict):
            return None
        try:
            split = cls(
                np.asarray(gate["weight"], np.float64).reshape(-1),
                float(gate["bias"]),
                int(gate["n_index"]),
                int(gate["s_index"]),
                float(gate.get("floor", RR_FLOOR)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            _LOGGER.warning("model card rr_gate unusable (%s): no rhythm expert", exc)
            return None
        finite = bool(np.all(np.isfinite(split.weight))) and np.isfinite(split.bias)
        if not finite or not split.floor > 0 or min(split.n, split.s) < 0 or split.n == split.s:
            _LOGGER.warning("model card rr_gate has bad values: no rhythm expert")
            return None
        return split
