"""Patient access codes, managed by clinicians from the patient page (and the JSON API).

A code is shown once, right after it is created; the store keeps only its SHA-256. Codes are
listed and revoked by an id = the first 12 hex digits of that hash (no secret in URLs).
"""

from __future__ import annotations

import time
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

from store.records import PatientToken
from web import auth
from web.access_codes import new_patient_token
from web.patient_link import PatientLink, login_url
from web.views.context import store
from web.views.forms import payload, text
from web.views.patients import known_patient, simulated

bp = Blueprint("tokens", __name__)

ID_LEN = 12
MAX_DAYS = 3650


def token_json(t: PatientToken, now: float) -> dict[str, Any]:
    """A token without its hash: id, label, dates and whether it still works at ``now`` (Unix s)."""
    return {"id": t.token_hash[:ID_LEN], "label": t.label, "created_at": t.created_at,
            "expires_at": t.expires_at, "revoked": t.revoked, "valid": t.is_valid(now)}  # fmt: skip


def _days(data: dict[str, Any]) -> float:
    raw = data.get("days", 365)
    try:
        days = float(raw)
    except (TypeError, ValueError):
        abort(400, description="Field 'days' must be a number (0: never expires).")
    if not 0 <= days <= MAX_DAYS:
        abort(400, description=f"Field 'days' must be between 0 and {MAX_DAYS}.")
    return days


def mint(client_id: str, data: dict[str, Any]) -> tuple[str, PatientToken]:
    """Create a code for ``client_id`` (clinicians only); audit-logged."""
    p = auth.require_clinician()
    known_patient(client_id)
    days = _days(data)
    label = text(data, "label", max_len=100, required=False)
    token, token_hash = new_patient_token()
    expires = time.time() + days * 86400 if days else None
    rec = store().create_patient_token(token_hash, client_id, expires_at=expires, label=label)
    store().audit(
        p.name,
        "patient_token",
        target=client_id,
        details={"id": token_hash[:ID_LEN], "label": label},
    )
    return token, rec


def _find(client_id: str, token_id: str) -> PatientToken:
    matches = [
        t for t in store().list_patient_tokens(client_id) if t.token_hash.startswith(token_id)
    ]
    if len(token_id) != ID_LEN or len(matches) != 1:
        abort(404, description=f"No access code {token_id[:ID_LEN]!r} for patient {client_id}.")
    return matches[0]


def revoke(client_id: str, token_id: str) -> PatientToken:
    """Revoke one code (clinicians only); audit-logged."""
    p = auth.require_clinician()
    known_patient(client_id)
    tok = _find(client_id, token_id)
    store().revoke_patient_token(tok.token_hash)
    store().audit(p.name, "revoke_patient_token", target=client_id, details={"id": token_id})
    return tok


@bp.post("/patients/<client_id>/tokens")
def create_form(client_id: str) -> str:
    """Create a code and show it once, with its link and the link as a QR code."""
    token, rec = mint(client_id, payload())
    link = PatientLink(client_id, token, login_url(request.url_root, token))
    return render_template("token_created.html", client_id=client_id, token=token, rec=rec,
                           link=link, simulated=simulated(client_id, store().get_client(client_id)))  # fmt: skip


@bp.post("/patients/<client_id>/tokens/<token_id>/revoke")
def revoke_form(client_id: str, token_id: str) -> WerkzeugResponse:
    """Revoke a code; back to the patient page."""
    revoke(client_id, token_id)
    flash(f"Access code {token_id} revoked.", "ok")
    return redirect(url_for("patients.patient", client_id=client_id))


@bp.get("/api/patients/<client_id>/tokens")
def api_list(client_id: str) -> Response:
    """The patient's codes (without secrets)."""
    auth.require_clinician()
    known_patient(client_id)
    now = time.time()
    return jsonify(tokens=[token_json(t, now) for t in store().list_patient_tokens(client_id)])


@bp.post("/api/patients/<client_id>/tokens")
def api_create(client_id: str) -> tuple[Response, int]:
    """``{days?: 365, label?}`` -> 201 ``{token, id, expires_at, ...}`` (the code, shown once)."""
    token, rec = mint(client_id, payload())
    url = login_url(request.url_root, token)
    return jsonify(token_json(rec, time.time()) | {"token": token, "url": url}), 201


@bp.post("/api/patients/<client_id>/tokens/<token_id>/revoke")
def api_revoke(client_id: str, token_id: str) -> Response:
    """Revoke one code."""
    tok = revoke(client_id, token_id)
    return jsonify(id=tok.token_hash[:ID_LEN], revoked=True)
