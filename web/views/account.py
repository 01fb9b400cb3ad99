"""Log-in and log-out for clinicians (password) and patients (access token)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
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
from web.security import csrf_token, hash_patient_token, verify_password
from web.views.forms import payload, text

_LOGGER = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

# Spent on unknown usernames too, so response time does not reveal which usernames exist.
_DUMMY_HASH = "scrypt:32768:8:1$dummysaltdummys$" + "0" * 128


def _throttle() -> auth.LoginThrottle:
    t: auth.LoginThrottle = current_app.extensions["medchain.throttle"]
    return t


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
    """The username if the credentials are valid and not throttled, else None."""
    key = f"{username}|{request.remote_addr}"
    now = time.time()
    if _throttle().blocked(key, now):
        _LOGGER.warning("log-in of %r from %s throttled", username, request.remote_addr)
        return None
    user = auth.store().get_user(username)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active or user.role not in auth.CLINICIAN_ROLES:
        _throttle().failed(key, now)
        _LOGGER.info("failed log-in of %r from %s", username, request.remote_addr)
        return None
    _throttle().succeeded(key)
    return user.username


def _start_session(**values: str) -> None:
    session.clear()  # new identity, new CSRF token
    session.permanent = True
    session.update(values)
    session["csrf_token"] = secrets.token_urlsafe(32)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | WerkzeugResponse | tuple[str, int]:
    """Clinician log-in form."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    data = payload()
    username = text(data, "username", max_len=64)
    password = text(data, "password", max_len=256)
    name = _check_clinician(username, password)
    if name is None:
        flash("Wrong username or password (or too many attempts: wait a few minutes).", "error")
        return render_template("login.html", next=data.get("next", "")), 401
    _start_session(user=name)
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
    _start_session(patient_token=token_hash)
    return redirect(url_for("patients.patient", client_id=tok.client_id))


@bp.post("/logout")
def logout() -> WerkzeugResponse:
    """End the session."""
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/api/login")
def api_login() -> tuple[Response, int]:
    """JSON log-in: ``{"username", "password"}`` -> ``{"user", "role", "csrf_token"}``."""
    data = payload()
    name = _check_clinician(text(data, "username", max_len=64), text(data, "password", max_len=256))
    if name is None:
        return jsonify(error={"code": 401, "message": "wrong username or password"}), 401
    _start_session(user=name)
    user = auth.store().get_user(name)
    return jsonify(user=name, role=user.role if user else "", csrf_token=csrf_token()), 200


@bp.post("/api/logout")
def api_logout() -> Response:
    """End the session."""
    session.clear()
    return jsonify(ok=True)


@bp.get("/api/me")
def api_me() -> Response:
    """The caller and the CSRF token to send with POSTs."""
    p = auth.require_login()
    out: dict[str, Any] = {"kind": p.kind, "name": p.name, "role": p.role, "client_id": p.client_id}
    if "Authorization" not in request.headers:
        out["csrf_token"] = csrf_token()
    return jsonify(out)
