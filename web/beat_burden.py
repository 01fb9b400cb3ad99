"""Beats per class over a period, as a Holter report gives them (pure; the clinician's page).

The ectopy burden is the share of each class among the *classified* beats: beats the edge's
quality gate reported unreadable (Q) are counted apart, so a noisy day does not lower the V or
S burden. Counts are of the model's predictions; clinicians' corrections are not applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AAMI_ORDER = ("N", "S", "V", "F")  # classified beats, in a Holter report's order
UNREADABLE = "Q"


def share_text(count: int, total: int) -> str:
    """``count`` of ``total`` as a percentage with one decimal (``<0.1 %`` rather than a
    ``0.0 %`` that reads as none)."""
    if total <= 0:
        return "—"
    share = 100.0 * count / total
    return "<0.1 %" if 0 < share < 0.05 else f"{share:.1f} %"


def beat_burden(counts: Mapping[str, int]) -> dict[str, Any]:
    """Beats per predicted class with their share of the classified beats.

    Parameters
    ----------
    counts : mapping
        Beats per predicted label over the period (labels with no positive count are left out).

    Returns
    -------
    dict
        ``classified``: beats of every label but Q; ``unreadable``: Q beats; ``classes``: one
        ``{"label", "count", "share"}`` per classified label with beats, N, S, V, F first and
        any other label after them by name; ``share`` is text (``"3.1 %"``, ``"<0.1 %"``).
    """
    kept = {lab: int(n) for lab, n in counts.items() if n > 0}
    unreadable = kept.pop(UNREADABLE, 0)
    classified = sum(kept.values())
    order = [lab for lab in AAMI_ORDER if lab in kept] + sorted(set(kept) - set(AAMI_ORDER))
    classes = [
        {"label": lab, "count": kept[lab], "share": share_text(kept[lab], classified)}
        for lab in order
    ]
    return {"classified": classified, "unreadable": unreadable, "classes": classes}
