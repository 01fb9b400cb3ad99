"""Log-in and log-out for clinicians (password) and patients (access token)."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers.response import Response as WerkzeugResponse

from web import auth
from web.access_codes import hash_patient_token
from web.security import csrf_token, new_csrf_token, verify_password
from web.views.forms import USERNAME_MAX_LEN, payload, text

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

# Spent on unknown usernames too, so response time does not reveal which usernames exist.
_DUMMY_HASH = "scrypt:32768:8:1$dummysaltdummys$" + "0" * 128


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths (no open redirect)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("patients.index")


def _check_clinician(username: str, password: str) -> str | None:
    """The username if the credentials are valid, else None (attempts are limited before
    this runs: ``web.limits``)."""
    user = auth.store().get_user(username)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active or user.role not in auth.CLINICIAN_ROLES:
        _LOGGER.info("failed log-in of %r from %s", username, request.remote_addr)
        return None
    return user.username


def _start_session(generation: int, **values: str) -> None:
    session.clear()  # new identity, new CSRF token
    session.permanent = True
    session.update(values)
    session["gen"] = generation
    new_csrf_token()


def _end_session() -> None:
    """Log out: bump the store's session generation (ends every copy of this session's cookie)
    and clear the cookie."""
    cred = auth.current_credential()
    if cred is not None and cred.kind == "user":
        auth.store().bump_user_session_generation(cred.key)
    elif cred is not None and cred.kind == "token":
        auth.store().bump_token_session_generation(cred.key)
    session.clear()


def _clinician_session(name: str) -> None:
    user = auth.store().get_user(name)
    _start_session(user.session_generation if user else 0, user=name)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | WerkzeugResponse | tuple[str, int]:
    """Clinician log-in form."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    data = payload()
    username = text(data, "username", max_len=USERNAME_MAX_LEN)
    password = text(data, "password", max_len=256)
    name = _check_clinician(username, password)
    if name is None:
        flash("Wrong username or password.", "error")
        return render_template("login.html", next=data.get("next", "")), 401
    _clinician_session(name)
    auth.store().audit(name, "login", target=str(request.remote_addr))
    return redirect(_safe_next(data.get("next")))


@bp.route("/patient/login", methods=["GET", "POST"])
def patient_login() -> str | WerkzeugResponse | tuple[str, int]:
    """Patient log-in with an access token."""
    if request.method == "GET":
        return render_template("patient_login.html")
    token = text(payload(), "token", max_len=256)
    token_hash = hash_patient_token(token)
    tok = auth.store().get_patient_token(token_hash)
    if tok is None or not tok.is_valid(time.time()):
        flash("This access code is not valid (it may have expired or been revoked).", "error")
        return render_template("patient_login.html"), 401
    _start_session(tok.session_generation, patient_token=token_hash)
    return redirect(url_for("patients.patient", client_id=tok.client_id))


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    """End the session (and every copy of it)."""
    _end_session()
    return redirect(url_for("auth.login"))


@bp.post("/api/login")
def api_login() -> tuple[Response, int]:
    """JSON log-in: ``{"username", "password"}`` -> ``{"user", "role", "csrf_token"}``.

    JSON only (415 otherwise): a cross-site page can post a form, not JSON, so no log-in CSRF.
    """
    if not request.is_json:
        abort(415, description="Send the log-in as JSON (Content-Type: application/json).")
    data = payload()
    name = _check_clinician(
        text(data, "username", max_len=USERNAME_MAX_LEN), text(data, "password", max_len=256)
    )
    if name is None:
        return jsonify(error={"code": 401, "message": "wrong username or password"}), 401
    _clinician_session(name)
    user = auth.store().get_user(name)
    return jsonify(user=name, role=user.role if user else "", csrf_token=csrf_token()), 200


@bp.post("/api/logout")
def api_logout() -> Response:
    """End the session (and every copy of it)."""
    _end_session()
    return jsonify(ok=True)


@bp.get("/api/me")
def api_me() -> Response:
    """The caller and the CSRF token to send with POSTs."""
    p = auth.require_login()
    out: dict[str, Any] = {"kind": p.kind, "name": p.name, "role": p.role, "client_id": p.client_id}
    if "Authorization" not in request.headers:
        out["csrf_token"] = csrf_token()
    return jsonify(out)
