"""What the device says about itself in its retained status (``Status.detail``).

The clinician's patient page shows it: heart rate, backlog, signal quality, predictions set
aside unsent, and whether S calls inside atrial fibrillation are reported N.
"""

from __future__ import annotations

import json

from edge_agent.agent_ports import AgentStats, AuxMonitor, BeatGate, WindowMonitor


def status_detail(
    hr_bpm: float,
    stats: AgentStats,
    counts: dict[str, int],
    aux: AuxMonitor | None,
    rhythm: WindowMonitor | None,
    gate: BeatGate | None,
) -> str:
    """The device's current state as compact JSON.

    Parameters
    ----------
    hr_bpm : float
        ECG heart rate (bpm, median of the last 8 RR; NaN before any).
    stats : AgentStats
        ``beats`` so far, and ``rows_not_buffered`` (lost to a buffer that could not write).
    counts : dict
        Buffer rows per state (``SqliteBuffer.counts``): ``pending`` is the backlog,
        ``rejected`` the rows set aside unsent because the store would refuse them.
    aux, rhythm, gate : optional
        PPG heart rate (bpm) and activity level; the rhythm model's judgement of the latest
        10 s (``signal``: "ok" / "too noisy"); whether S calls inside AF are reported N.

    Returns
    -------
    str
        ``{"ecg_hr_bpm", "beats", "backlog", "rejected"?, "not_buffered"?, "ppg_hr_bpm"?,
        "activity"?, "signal"?, "s_in_af_as_n"?}``; ``backlog`` None when the buffer could
        not be read; ``s_in_af_as_n: true`` so the care team knows this patient's SVEB count
        leaves AF out.
    """
    state: dict[str, object] = {
        "ecg_hr_bpm": round(hr_bpm, 1) if hr_bpm == hr_bpm else None,
        "beats": stats.beats,
        "backlog": counts.get("pending"),  # None: the buffer could not be read
    }
    if counts.get("rejected"):  # set aside unsent: the store would refuse them (edge_agent.outbox)
        state["rejected"] = counts["rejected"]
    if stats.rows_not_buffered:  # the buffer could not write them (disk full): lost
        state["not_buffered"] = stats.rows_not_buffered
    wrist_hr = getattr(aux, "hr", None)
    if wrist_hr:
        state["ppg_hr_bpm"] = round(wrist_hr[-1][1].bpm, 1)
    activity = getattr(aux, "activity_level", "")
    if activity:
        state["activity"] = activity
    quality = getattr(rhythm, "signal_quality", "")
    if quality:
        state["signal"] = quality
    if gate is not None and gate.s_in_af_as_n:
        state["s_in_af_as_n"] = True
    return json.dumps(state, separators=(",", ":"))
