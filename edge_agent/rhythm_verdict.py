"""One rhythm verdict for one recording (pure): the spot check, the evaluator, the monitor.

:func:`recording_verdict` checks the raw recording (``common.signals.rhythm_input``: too short,
flat, clipped...), cuts it into the model's windows (itself up to 30 s, else 30 s every 10 s),
prepares each window exactly as the model's card says, asks a :class:`WindowScorer` for class
probabilities, averages them and takes the arg-max. A recording no model should decide on (under
9 s, a flat line) gets ``decided = False`` and the class :data:`UNREADABLE`, never a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from common.signals.rhythm_input import (
    FEATURE_NAMES,
    QUALITY_FLAGS,
    RhythmInput,
    prepare_rhythm_input,
    quality_flags,
    window_starts,
)

_LOGGER = logging.getLogger(__name__)

UNREADABLE = "noisy"  # the class of a recording that cannot be read (CinC 2017's '~')
_HR = FEATURE_NAMES.index("hr_bpm")


class WindowScorer(Protocol):
    """Prepared windows -> class probabilities ``(n, len(classes))``."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def version(self) -> str: ...

    def probabilities(self, inputs: Sequence[RhythmInput]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class RhythmVerdict:
    """The rhythm of one recording.

    Attributes
    ----------
    label : str
        Class name (``N``, ``AF``, ``O``, ``noisy``); ``noisy`` when not decided.
    probabilities : dict
        Mean class probabilities over the windows (empty when not decided).
    quality : tuple of str
        ``common.signals.rhythm_input.QUALITY_FLAGS`` found in the recording or its windows.
    decided : bool
        False for input no model should decide on (too short, flat).
    duration_s : float
    windows : int
        Windows scored.
    heart_rate_bpm : float or None
        Median over the windows of the detected heart rate.
    """

    label: str
    probabilities: dict[str, float]
    quality: tuple[str, ...]
    decided: bool
    duration_s: float
    windows: int
    heart_rate_bpm: float | None

    @property
    def noisy(self) -> bool:
        """True when the recording is unreadable (the noisy class, or not decided)."""
        return self.label == UNREADABLE or not self.decided

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (probabilities rounded to 4 decimals)."""
        return {
            "class": self.label,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "quality": list(self.quality),
            "decided": self.decided,
            "duration_s": round(self.duration_s, 3),
            "windows": self.windows,
            "heart_rate_bpm": None
            if self.heart_rate_bpm is None
            else round(self.heart_rate_bpm, 1),
        }


def undecided(flags: tuple[str, ...], duration_s: float) -> RhythmVerdict:
    """The verdict of a recording no model decides on."""
    return RhythmVerdict(UNREADABLE, {}, flags, False, duration_s, 0, None)


def windows_verdict(
    inputs: Sequence[RhythmInput], scorer: WindowScorer, flags: tuple[str, ...] = ()
) -> RhythmVerdict:
    """Verdict of prepared windows of one recording (mean probabilities, arg-max)."""
    duration = max((i.duration_s for i in inputs), default=0.0)
    found = set(flags).union(*(i.quality for i in inputs))
    quality = tuple(f for f in QUALITY_FLAGS if f in found)
    usable = [i for i in inputs if i.decidable]
    if not usable:
        return undecided(quality, duration)
    probs = np.asarray(scorer.probabilities(usable), dtype=np.float64).mean(axis=0)
    classes = scorer.classes
    hr = [float(i.features[_HR]) for i in usable if i.features[_HR] > 0]
    return RhythmVerdict(
        classes[int(np.argmax(probs))],
        {c: float(p) for c, p in zip(classes, probs, strict=True)},
        quality,
        True,
        duration,
        len(usable),
        float(np.median(hr)) if hr else None,
    )


def recording_verdict(
    ecg_uv: npt.ArrayLike, sampling_rate: float, scorer: WindowScorer
) -> RhythmVerdict:
    """The verdict of a whole recording (module docstring).

    Parameters
    ----------
    ecg_uv : array_like, shape (n,)
        One lead in µV.
    sampling_rate : float
        Hz.
    scorer : WindowScorer
    """
    x = np.asarray(ecg_uv, dtype=np.float64).ravel()
    flags = quality_flags(x, sampling_rate)
    duration = x.size / sampling_rate
    if "too_short" in flags or "flat" in flags:
        return undecided(flags, duration)
    inputs = [
        prepare_rhythm_input(x[s:e], sampling_rate) for s, e in window_starts(x.size, sampling_rate)
    ]
    verdict = windows_verdict(inputs, scorer, flags)
    return RhythmVerdict(
        verdict.label,
        verdict.probabilities,
        verdict.quality,
        verdict.decided,
        duration,
        verdict.windows,
        verdict.heart_rate_bpm,
    )
