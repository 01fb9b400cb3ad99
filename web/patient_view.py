"""What a patient's own page says, in plain words (pure).

The clinician view keeps the details (classes, probabilities, model versions, ECG snippets);
the patient sees their heart rate, a rhythm verdict in words, how many beats were flagged for
their care team, and whether the data is simulated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SIMULATED_DATASET = "simulated"  # Client.dataset of a patient whose device replays simulated ECG
NOISY_FRACTION = 0.5  # unreadable (Q) beats among the recent ones: the signal is too noisy
EXTRA_FRACTION = 0.1  # S/V/F beats among the recent ones: frequent extra beats
TOLD = "your care team has been told"
RHYTHM_WORDS = {
    "AF": ("af", f"possible atrial fibrillation — {TOLD}"),
    "VT run": ("vt", f"runs of fast extra beats — {TOLD}"),
    "Tachycardia": ("fast", f"fast heart rate — {TOLD}"),
    "Bradycardia": ("slow", f"slow heart rate — {TOLD}"),
}
NORMAL = frozenset({"N", "normal"})
UNREADABLE = frozenset({"Q"})


def is_simulated(dataset: str, status: Mapping[str, Any] | None) -> bool:
    """True when the data of a patient is simulated, not a person's.

    Explicit marks only (never a guess from the name): the client record's ``dataset`` is
    ``"simulated"``, or the device's status ``detail`` (a JSON object) has ``"simulated": true``.
    """
    if dataset == SIMULATED_DATASET:
        return True
    detail = (status or {}).get("detail")
    if not isinstance(detail, str) or not detail.startswith("{"):
        return False
    try:
        parsed = json.loads(detail)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("simulated") is True


def rhythm_verdict(labels: Sequence[str], rhythm: Mapping[str, Any] | None) -> tuple[str, str]:
    """A code and a plain sentence for the patient.

    Parameters
    ----------
    labels : sequence of str
        Classes of the most recent beats (AAMI ``N S V F Q``), any order.
    rhythm : mapping or None
        The live rhythm ``{label, active}`` (``web.live.hub``), or None.

    Returns
    -------
    (code, text) : tuple of str
        ``waiting``, ``noisy``, ``af``, ``vt``, ``fast``, ``slow``, ``extra_beats`` or
        ``regular``, and the sentence shown.
    """
    if not labels:
        return "waiting", "waiting for your device"
    if sum(lab in UNREADABLE for lab in labels) / len(labels) >= NOISY_FRACTION:
        return "noisy", "signal too noisy — check that the chest strap sits well and is moist"
    if rhythm and rhythm.get("active") and rhythm.get("label") in RHYTHM_WORDS:
        return RHYTHM_WORDS[str(rhythm["label"])]
    extra = sum(lab not in NORMAL and lab not in UNREADABLE for lab in labels)
    if extra / len(labels) >= EXTRA_FRACTION:
        return "extra_beats", f"regular rhythm with frequent extra beats — {TOLD}"
    return "regular", "regular rhythm"


def flagged_count(counts: Mapping[str, int]) -> int:
    """Beats flagged for the care team among per-class counts: every class but N and Q."""
    return sum(n for lab, n in counts.items() if lab not in NORMAL and lab not in UNREADABLE)
