"""Label review: flagged beats and events with their ECG, confirmed or corrected by a
clinician; each label is stored and delivered to the patient's device (see ``web.delivery``)."""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers.response import Response as WerkzeugResponse

from common.wire_fields import MAX_NS
from store.records import LabelRecord
from web import auth
from web.delivery import deliver
from web.live.hub import NORMAL_CLASSES
from web.views.context import feed, hub, store
from web.views.forms import choice, integer, payload, text
from web.views.patients import known_patient, patient_rows, simulated

bp = Blueprint("labels", __name__)

BEAT_CLASSES = ("N", "S", "V", "F", "Q")  # AAMI classes
EVENT_LABELS = ("vt_run", "af_episode", "bradycardia", "tachycardia", "fall", "inactivity",
                "false_alarm", "artifact", "other")  # fmt: skip
_EVENT_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_T_NS = MAX_NS  # no stored beat or event is later (the wire's bound); t_ns + 1 fits int64


def label_json(rec: LabelRecord) -> dict[str, Any]:
    """JSON view of a stored label."""
    return {"label_id": rec.label_id, "client_id": rec.client_id, "target": rec.target,
            "t_ns": rec.t_ns, "event_id": rec.event_id, "label": rec.label,
            "author": rec.author, "note": rec.note, "state": str(rec.state),
            "created_at": rec.created_at, "updated_at": rec.updated_at}  # fmt: skip


def review_items(client_ids: list[str], show_all: bool, limit: int = 100) -> list[dict[str, Any]]:
    """Flagged beats (not normal) and events of these patients, newest first, with snippets
    (while the web process still holds them) and the label given so far, if any."""
    out: list[dict[str, Any]] = []
    for cid in client_ids:
        labels = {_label_key(lb.target, lb.t_ns, lb.event_id): lb
                  for lb in store().list_labels(cid, limit=1000)}  # fmt: skip
        items = {i.item_id: i.to_json() for i in hub().flagged(cid)}
        for e in store().latest_events(cid, 50):
            items.setdefault(e.event_id, {"item_id": e.event_id, "client_id": cid, "target": "event",
                                          "t_ns": e.t_start_ns, "t_end_ns": e.t_end_ns,
                                          "label": e.kind, "probs": {}, "details": e.details,
                                          "snippet": None})  # fmt: skip
        for b in store().latest_predictions(cid, 500):
            if b.label not in NORMAL_CLASSES:
                items.setdefault(f"beat:{b.t_ns}", {"item_id": f"beat:{b.t_ns}", "client_id": cid,
                                                    "target": "beat", "t_ns": b.t_ns,
                                                    "t_end_ns": b.t_ns, "label": b.label,
                                                    "probs": b.probs, "details": {},
                                                    "snippet": None})  # fmt: skip
        for item in items.values():
            event_id = item["item_id"] if item["target"] == "event" else ""
            # a label stored before event labels named their event (schema v6) has none
            lb = labels.get(_label_key(item["target"], item["t_ns"], event_id)) or labels.get(
                _label_key(item["target"], item["t_ns"], "")
            )
            item["clinician_label"] = label_json(lb) if lb else None
            if show_all or lb is None:
                out.append(item)
    out.sort(key=lambda i: i["t_ns"], reverse=True)
    return out[:limit]


def _review_scope() -> tuple[list[str], bool]:
    auth.require_clinician()
    cid = request.args.get("client_id", "")
    show_all = request.args.get("show") == "all"
    if cid:
        known_patient(cid)
        return [cid], show_all
    return [r["client_id"] for r in patient_rows()], show_all


def _label_key(target: str, t_ns: int, event_id: str) -> tuple[str, int, str]:
    return target, t_ns, event_id


def _beat_exists(cid: str, t_ns: int) -> bool:
    if any(i.target == "beat" and i.t_ns == t_ns for i in hub().flagged(cid)):
        return True
    return bool(store().list_predictions(cid, since_ns=t_ns, until_ns=t_ns + 1, limit=1))


def _event_named(cid: str, t_ns: int, data: dict[str, Any]) -> str:
    """The id of the event a label is for: ``event_id`` when given, else the one event that
    starts at ``t_ns`` (404 when none does; 400 when several do and none is named)."""
    ids = {i.item_id for i in hub().flagged(cid) if i.target == "event" and i.t_ns == t_ns}
    ids |= {e.event_id for e in store().list_events(cid, since_ns=t_ns, until_ns=t_ns + 1)}
    named = text(data, "event_id", max_len=128, required=False)
    if named and named not in ids or not ids:
        abort(404, description=f"Patient {cid} has no such event at t_ns={t_ns}.")
    if not named and len(ids) > 1:
        abort(400, description=f"{len(ids)} events start at t_ns={t_ns}: name one (event_id).")
    return named or next(iter(ids))


def create_label(data: dict[str, Any]) -> tuple[LabelRecord, bool]:
    """Validate, store, deliver and audit a label; return it and whether it reached the broker."""
    p = auth.require_clinician()
    cid = text(data, "client_id", max_len=64)
    known_patient(cid)
    target = choice(data, "target", ("beat", "event"))
    t_ns = integer(data, "t_ns", lo=0, hi=MAX_T_NS)
    if target == "beat":
        value = choice(data, "label", BEAT_CLASSES)
    else:
        value = text(data, "label", max_len=32)
        if not _EVENT_LABEL.match(value):
            abort(400, description="An event label is a lower-case name such as af_episode.")
    note = text(data, "note", max_len=500, required=False)
    event_id = _event_named(cid, t_ns, data) if target == "event" else ""
    if target == "beat" and not _beat_exists(cid, t_ns):
        abort(404, description=f"Patient {cid} has no beat at t_ns={t_ns}.")
    if store().get_client(cid) is None:  # known from the live feed only: register for delivery
        store().register_client(cid)
    rec = store().add_label(client_id=cid, target=target, t_ns=t_ns, label=value,
                            author=p.name, note=note, event_id=event_id)  # fmt: skip
    delivered = bool(deliver(store(), feed(), [rec]))
    if delivered:  # re-read to return the new state
        rec = next(
            (lb for lb in store().list_labels(cid, limit=1000) if lb.label_id == rec.label_id), rec
        )
    store().audit(p.name, "label", target=cid,
                  details={"label_id": rec.label_id, "target": target, "t_ns": t_ns,
                           "event_id": event_id, "label": value,
                           "delivered": delivered})  # fmt: skip
    return rec, delivered


@bp.get("/labels")
def review() -> str:
    """Label review page."""
    cids, show_all = _review_scope()
    one = cids[0] if request.args.get("client_id") else None
    sim = one is not None and simulated(one, store().get_client(one))
    return render_template("labels.html", items=review_items(cids, show_all), show_all=show_all,
                           client_filter=request.args.get("client_id", ""), simulated=sim,
                           beat_classes=BEAT_CLASSES, event_labels=EVENT_LABELS)  # fmt: skip


@bp.post("/labels")
def submit() -> WerkzeugResponse:
    """Form post of one label; back to the review page with a message."""
    data = payload()
    rec, delivered = create_label(data)
    if delivered:
        flash(f"Label {rec.label} stored and delivered to {rec.client_id}'s device.", "ok")
    else:
        flash(
            f"Label {rec.label} stored; it will be delivered when the device's broker is reachable.",
            "warn",
        )
    back = data.get("next", "")
    if not (isinstance(back, str) and back.startswith("/") and not back.startswith("//")):
        back = url_for("labels.review")
    return redirect(back)


@bp.get("/api/labels/review")
def api_review() -> Response:
    """Flagged items to review; ``client_id`` filters, ``show=all`` includes labelled ones."""
    cids, show_all = _review_scope()
    return jsonify(items=review_items(cids, show_all))


@bp.post("/api/labels")
def api_create() -> tuple[Response, int]:
    """``{client_id, target: beat|event, t_ns, event_id?, label, note?}`` -> 201
    ``{label, delivered}`` (``event_id``: needed when several events start at ``t_ns``)."""
    rec, delivered = create_label(payload())
    return jsonify(label=label_json(rec), delivered=delivered), 201


@bp.get("/api/patients/<client_id>/labels")
def api_labels(client_id: str) -> Response:
    """Labels of a patient, newest first (the patient may see their own)."""
    known_patient(client_id)
    return jsonify(labels=[label_json(lb) for lb in store().list_labels(client_id, limit=500)])
