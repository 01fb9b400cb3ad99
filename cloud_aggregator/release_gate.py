"""The release gate: a round's candidate model is published only if it is not worse (pure).

The aggregator scores the candidate and the model it replaces on its own held-out validation
set (:mod:`cloud_aggregator.evaluation`) and refuses the candidate when

- its macro-F1 is more than ``margin`` below the current model's, or
- the sensitivity of any class the validation set holds falls by more than ``class_margin``
  (a targeted attack on one rare class barely moves macro-F1).

A refused round fails with the reason; the current model stays published. Margins are absolute
(0.05 = 5 points). Honest rounds move these figures by a point or two on a validation set of a
few thousand beats, so the defaults let training proceed and stop a model that forgets a class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ReleaseGate:
    """Limits on how much worse a candidate may score than the current release.

    Attributes
    ----------
    margin : float
        Largest accepted fall of ``macro_f1`` (absolute, 0..1).
    class_margin : float
        Largest accepted fall of any ``se_<class>`` (absolute, 0..1).
    """

    margin: float = 0.05
    class_margin: float = 0.15

    def refusal(self, candidate: Mapping[str, float], current: Mapping[str, float]) -> str | None:
        """Why the candidate must not be published, or None when it may.

        Parameters
        ----------
        candidate, current : mapping of str to float
            Flat metrics of both models on the same validation set (``macro_f1``,
            ``se_<class>``; NaN where a class is absent).
        """
        worse = _fall(candidate, current, "macro_f1")
        if worse > self.margin:
            return _reason("macro_f1", candidate, current, worse, self.margin)
        for key in sorted(k for k in current if k.startswith("se_")):
            worse = _fall(candidate, current, key)
            if worse > self.class_margin:
                return _reason(key, candidate, current, worse, self.class_margin)
        return None


def _reason(
    key: str, candidate: Mapping[str, float], current: Mapping[str, float], fall: float, m: float
) -> str:
    new = candidate.get(key, math.nan)
    return (
        f"release gate: {key} {new:.3f} is {fall:.3f} below the current model's"
        f" {current[key]:.3f} (margin {m:.3f})"
    )


def _fall(candidate: Mapping[str, float], current: Mapping[str, float], key: str) -> float:
    """How far ``key`` fell (0 when it rose or is undefined for the current model).

    A candidate that lost a figure the current model has (missing or NaN) fell all the way.
    """
    now = current.get(key, math.nan)
    if not math.isfinite(now):
        return 0.0
    new = candidate.get(key, math.nan)
    return now - (new if math.isfinite(new) else 0.0)
