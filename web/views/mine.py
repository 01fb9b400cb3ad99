"""The patient's own view in plain words (``web.patient_view``): JSON the page polls."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify

from store.records import Client
from web.patient_view import flagged_count, is_simulated, rhythm_verdict
from web.views.context import hub, store
from web.views.patients import data_day, day_counts, known_patient

bp = Blueprint("mine", __name__)

RECENT_BEATS = 30  # beats behind the verdict


def _heart_rate(snap: dict[str, Any], rr_s: list[float]) -> float | None:
    hr = snap.get("heart_rate_bpm")
    if hr is None and rr_s:
        hr = round(60.0 / float(np.median(rr_s)), 1)
    return None if hr is None else round(float(hr))


def patient_view(cid: str, client: Client | None) -> dict[str, Any]:
    """Heart rate (bpm), rhythm verdict, beats flagged in the last 24 h of data, device online,
    simulated: no classes, probabilities or model versions."""
    snap = hub().summary(cid) or {}
    stored = store().latest_predictions(cid, RECENT_BEATS)
    labels = hub().recent_labels(cid) or [b.label for b in stored]
    rr = [b.rr_s for b in stored if b.rr_s == b.rr_s and 0.2 <= b.rr_s <= 3.0]  # 20-300 bpm
    code, text = rhythm_verdict(labels, snap.get("rhythm"))
    day = data_day(cid, stored)
    if stored and day is not None:
        counts = day_counts(cid, day)  # flagged over the last 24 h of data
    else:  # nothing stored (yet): what the live feed flagged
        beats = [i.label for i in hub().flagged(cid) if i.target == "beat"]
        counts = {lab: beats.count(lab) for lab in set(beats)}
    status = snap.get("status")
    online = status["online"] if status else (client.online if client else None)
    return {
        "client_id": cid,
        "simulated": is_simulated(client.dataset if client else "", status),
        "heart_rate_bpm": _heart_rate(snap, rr),
        "rhythm": {"code": code, "text": text},
        "flagged_for_care_team": flagged_count(counts),
        "device_online": online,
    }


@bp.get("/api/patients/<client_id>/view")
def api_view(client_id: str) -> Response:
    """The patient's plain view (the patient themself and clinicians)."""
    client = known_patient(client_id)
    return jsonify(patient_view(client_id, client))
