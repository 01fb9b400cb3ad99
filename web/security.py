"""CSRF tokens, security headers and password/token hashing for the web app.

CSRF: a random token per session (``secrets.token_urlsafe``), rendered into every form as
``csrf_token`` and sent by scripts in the ``X-CSRF-Token`` header; every state-changing request
that authenticates with the session cookie must carry it (compared in constant time). Requests
authenticated with a patient bearer token carry no cookie credentials and need none.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from flask import Flask, Response, request, session
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.security import check_password_hash, generate_password_hash

_LOGGER = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# JSON log-in is exempt: a cross-site page cannot send application/json without a CORS
# preflight, which this app never grants; other endpoints require the token regardless.
CSRF_EXEMPT_ENDPOINTS = frozenset({"auth.api_login"})
MIN_PASSWORD_LENGTH = 10
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class CsrfError(BadRequest):
    """A state-changing request without a valid CSRF token (HTTP 400)."""

    description = "The form expired or did not come from this site: reload the page and retry."


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf() -> None:
    """``before_request`` hook: reject unsafe requests lacking the session's token."""
    if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT_ENDPOINTS:
        return
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return  # bearer-token requests carry no ambient (cookie) credentials
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, sent):
        _LOGGER.info("CSRF check failed on %s %s", request.method, request.path)
        raise CsrfError()


def set_security_headers(resp: Response) -> Response:
    """``after_request`` hook: CSP, no sniffing, no framing, no caching of private pages."""
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def check_size() -> None:
    """``before_request`` hook: refuse a declared body over ``MAX_CONTENT_LENGTH`` up front
    (werkzeug enforces the limit only when the body is read, i.e. after other checks)."""
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def install(app: Flask) -> None:
    """Register the size and CSRF checks, the headers and the ``csrf_token`` template global."""
    app.before_request(check_size)
    app.before_request(check_csrf)
    app.after_request(set_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token


def hash_password(password: str) -> str:
    """Salted scrypt hash (werkzeug) of a clinician password.

    Raises
    ------
    ValueError
        If the password is shorter than ``MIN_PASSWORD_LENGTH`` characters.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches the stored hash."""
    return check_password_hash(password_hash, password)


def new_patient_token() -> tuple[str, str]:
    """A fresh patient access token and its hash: (token shown once, sha256 hex to store).

    The token has 256 random bits, so an unsalted SHA-256 is safe to store and lets the app look
    a presented token up by its hash.
    """
    token = secrets.token_urlsafe(32)
    return token, hash_patient_token(token)


def hash_patient_token(token: str) -> str:
    """SHA-256 hex of a presented patient token."""
    return hashlib.sha256(token.encode()).hexdigest()
