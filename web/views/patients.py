"""Patient area: patient list, the live patient page, its JSON API and the SSE stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request, stream_with_context

from common.types import BeatPrediction, Event
from store.records import Client
from web import auth
from web.beat_burden import beat_burden
from web.live import sse
from web.live.fanout import OwnerLimitError
from web.patient_view import is_simulated
from web.views.context import hub, settings, store
from web.views.forms import INT64_MAX, INT64_MIN
from web.views.forms import client_id as valid_client_id

bp = Blueprint("patients", __name__)

DAY_NS = 24 * 3600 * 10**9  # counts cover the last 24 h of data (not of the wall clock)


def data_day(cid: str, stored: Sequence[BeatPrediction] | None = None) -> tuple[int, int] | None:
    """The last 24 h of a patient's data, ``(since_ns, until_ns)`` (Unix ns, both included),
    ending at their latest beat, stored or live; None before the first beat. Both the
    clinician's burden and the patient's flagged count use it, so they count the same beats.
    ``stored``: the patient's latest stored beats if the caller has them already."""
    stored = store().latest_predictions(cid, 1) if stored is None else stored
    live = ((hub().summary(cid) or {}).get("latest_beat") or {}).get("t_ns")
    ends = [b.t_ns for b in stored] + ([int(live)] if live else [])
    return (max(ends) - DAY_NS, max(ends)) if ends else None


def day_counts(cid: str, day: tuple[int, int]) -> dict[str, int]:
    """Stored beats per predicted class in ``day`` (from :func:`data_day`)."""
    return store().prediction_counts(cid, since_ns=day[0], until_ns=day[1] + 1)


def known_patient(cid: str) -> Client | None:
    """Access check first (no existence leak to patients), then 404 for unknown ids.

    Returns the store's client record (None if the patient is only known from the live feed).
    """
    auth.require_patient_access(cid)
    valid_client_id(cid)
    client = store().get_client(cid)
    if client is None and hub().summary(cid) is None:
        abort(404, description=f"Unknown patient {cid!r}.")
    return client


def client_json(c: Client) -> dict[str, Any]:
    """JSON view of a store client record (no credentials)."""
    return {"client_id": c.client_id, "online": c.online, "last_seen": c.last_seen,
            "model_version": c.model_version, "task": c.task, "dataset": c.dataset}  # fmt: skip


def beat_json(b: BeatPrediction) -> dict[str, Any]:
    """JSON view of a beat prediction (NaN RR as null)."""
    rr = None if b.rr_s != b.rr_s else b.rr_s
    return {"t_ns": b.t_ns, "label": b.label, "probs": b.probs,
            "model_version": b.model_version, "rr_s": rr}  # fmt: skip


def event_json(e: Event) -> dict[str, Any]:
    """JSON view of an event."""
    return {"event_id": e.event_id, "kind": e.kind, "t_start_ns": e.t_start_ns,
            "t_end_ns": e.t_end_ns, "details": e.details}  # fmt: skip


def patient_rows() -> list[dict[str, Any]]:
    """Every patient from the store and the live feed, with their latest live summary."""
    rows: dict[str, dict[str, Any]] = {c.client_id: client_json(c) for c in store().list_clients()}
    for cid in hub().client_ids():
        rows.setdefault(cid, {"client_id": cid, "online": None, "last_seen": None,
                              "model_version": "", "task": "", "dataset": ""})  # fmt: skip
    for cid, row in rows.items():
        snap = hub().summary(cid) or {}
        row["heart_rate_bpm"] = snap.get("heart_rate_bpm")
        row["latest_beat"] = snap.get("latest_beat")
        if snap.get("status"):
            row["online"] = snap["status"]["online"]
        row["simulated"] = is_simulated(row.get("dataset", ""), snap.get("status"))
    return [rows[k] for k in sorted(rows)]


def simulated(cid: str, client: Client | None) -> bool:
    """Whether patient ``cid`` replays simulated data (see ``web.patient_view.is_simulated``)."""
    snap = hub().summary(cid) or {}
    return is_simulated(client.dataset if client else "", snap.get("status"))


def summary(cid: str, client: Client | None) -> dict[str, Any]:
    """Patient summary: device record, live status, latest beat, HR, rhythm (no samples)."""
    snap = hub().summary(cid) or {}
    out: dict[str, Any] = {"client_id": cid, "client": client_json(client) if client else None}
    for key in ("status", "latest_beat", "heart_rate_bpm", "rhythm"):
        out[key] = snap.get(key)
    if out["latest_beat"] is None:
        latest = store().latest_predictions(cid, 1)
        out["latest_beat"] = beat_json(latest[-1]) if latest else None
    out["simulated"] = is_simulated(client.dataset if client else "", out["status"])
    return out


@bp.get("/patients")
def index() -> str:
    """All patients (clinicians)."""
    auth.require_clinician()
    return render_template("patients.html", rows=patient_rows())


@bp.get("/patients/<client_id>")
def patient(client_id: str) -> str:
    """The live patient page for clinicians; the patient's own plain view for the patient."""
    client = known_patient(client_id)
    p = auth.require_login()
    sim = simulated(client_id, client)
    if not p.is_clinician:
        return render_template("my_heart.html", client_id=client_id, simulated=sim)
    codes = store().list_patient_tokens(client_id)
    day = data_day(client_id)
    burden = None if day is None else beat_burden(day_counts(client_id, day))
    return render_template("patient.html", client_id=client_id, client=client, codes=codes,
                           window_s=settings().ring_seconds, simulated=sim, burden=burden,
                           day_s=None if day is None else (day[0] / 1e9, day[1] / 1e9))  # fmt: skip


@bp.get("/api/patients")
def api_list() -> Response:
    """``[{client_id, online, last_seen, model_version, task, dataset, heart_rate_bpm, latest_beat}]``."""
    auth.require_clinician()
    return jsonify(patients=patient_rows())


@bp.get("/api/patients/<client_id>")
def api_patient(client_id: str) -> Response:
    """Summary of one patient."""
    client = known_patient(client_id)
    return jsonify(summary(client_id, client))


@bp.get("/api/patients/<client_id>/live")
def api_live(client_id: str) -> Response:
    """The live ring buffers (times in s since the epoch, one list per channel) and summary."""
    known_patient(client_id)
    return jsonify(hub().snapshot(client_id) or {"streams": {}})


def _range_args() -> dict[str, Any]:
    args: dict[str, Any] = {}
    try:
        for name in ("since_ns", "until_ns"):
            if request.args.get(name):
                args[name] = int(request.args[name])
        args["limit"] = min(max(int(request.args.get("limit", 200)), 1), 5000)
    except ValueError:
        abort(400, description="since_ns, until_ns and limit must be whole numbers.")
    if any(not INT64_MIN <= v <= INT64_MAX for v in args.values()):
        abort(400, description="since_ns and until_ns must fit in 64 bits.")
    return args


@bp.get("/api/patients/<client_id>/predictions")
def api_predictions(client_id: str) -> Response:
    """Stored beat predictions; ``since_ns``, ``until_ns``, ``limit`` (<= 5000) filter."""
    known_patient(client_id)
    beats = store().list_predictions(client_id, **_range_args())
    return jsonify(predictions=[beat_json(b) for b in beats])


@bp.get("/api/patients/<client_id>/events")
def api_events(client_id: str) -> Response:
    """Stored events, newest first; ``limit`` (<= 5000)."""
    known_patient(client_id)
    limit = _range_args()["limit"]
    events = store().latest_events(client_id, limit)
    return jsonify(events=[event_json(e) for e in reversed(events)])


@bp.get("/api/patients/<client_id>/flagged")
def api_flagged(client_id: str) -> Response:
    """Recent flagged beats and events with their ECG snippets (newest first)."""
    known_patient(client_id)
    return jsonify(flagged=[i.to_json() for i in hub().flagged(client_id)])


@bp.get("/api/patients/<client_id>/stream")
def api_stream(client_id: str) -> Response:
    """Server-sent events: ``snapshot`` then ``live``, ``pred``, ``status``, ``flagged``."""
    known_patient(client_id)
    p = auth.require_login()
    if request.method == "HEAD":  # a monitor's probe: no stream slot for a body never read
        return Response(mimetype="text/event-stream")
    s = settings()
    fan = hub().fanout
    try:
        sub = fan.subscribe(client_id, owner=p.name)
    except OwnerLimitError:
        abort(429, description=f"You have {s.sse_max_per_principal} live streams open already; "
                               "close other tabs and retry.")  # fmt: skip
    if sub is None:
        abort(503, description="Too many live streams are open; close other tabs and retry.")
    snapshot = hub().snapshot(client_id)  # taken after subscribing: nothing falls in between
    st, cred = store(), auth.current_credential()
    gen = sse.stream(sub, snapshot, retry_ms=s.sse_retry_ms, keepalive_s=s.sse_keepalive_s,
                     max_stream_s=s.sse_max_stream_s, on_close=lambda: fan.unsubscribe(sub),
                     still_allowed=lambda: auth.credential_valid(st, cred),
                     recheck_s=s.sse_auth_recheck_s)  # fmt: skip
    resp = Response(stream_with_context(gen), mimetype="text/event-stream")
    # a response closed before its body was read never runs the generator's ``finally``;
    # unsubscribing twice is harmless
    resp.call_on_close(lambda: fan.unsubscribe(sub))
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return resp
