"""CSRF (Flask-WTF), session cookies that errors never mint, the secret-key check, security
headers, and password/token hashing for the web app.

CSRF: Flask-WTF's ``CSRFProtect`` (a signed token bound to the session), rendered into every
form as ``csrf_token`` and sent by scripts in the ``X-CSRF-Token`` header. Every state-changing
request that authenticates with the session cookie must carry it. Requests authenticated with a
patient bearer token carry no cookie credentials and need none; ``POST /api/login`` takes JSON
only (a cross-site page cannot send JSON without a CORS preflight, which this app never grants).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, g, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.security import check_password_hash, generate_password_hash

from common.errors import ConfigError
from web.access_codes import hash_patient_token, new_patient_token

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "CSRF_HEADER",
    "check_secret_key",
    "csrf_token",
    "hash_password",
    "hash_patient_token",
    "install",
    "new_patient_token",
    "verify_password",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MESSAGE = "The form expired or did not come from this site: reload the page and retry."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT_ENDPOINTS = frozenset({"auth.api_login"})  # JSON only: see the module docstring
MIN_PASSWORD_LENGTH = 10
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10
_PLACEHOLDER = re.compile(r"change.?me|secret|password|example|default|insecure|replace", re.I)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

csrf = CSRFProtect()


def check_secret_key(key: str) -> None:
    """Refuse a key an attacker could guess (it signs the session cookies and CSRF tokens).

    Raises
    ------
    ConfigError
        If ``key`` is shorter than 32 characters, has fewer than 10 distinct characters or
        reads like a placeholder (``changeme``, ``secret``, ...).
    """
    hint = "use e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"MEDCHAIN_WEB_SECRET_KEY is too short (at least {MIN_SECRET_LENGTH} "
                          f"random characters): {hint}")  # fmt: skip
    if len(set(key)) < MIN_SECRET_DISTINCT or _PLACEHOLDER.search(key):
        raise ConfigError(f"MEDCHAIN_WEB_SECRET_KEY is too easy to guess: {hint}")


class ErrorSafeSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions that an error answer to a cookie-less request never creates.

    A cross-site POST arrives without the victim's cookie (SameSite=Lax); were its error page to
    mint a fresh session, the browser would store that cookie over the victim's and log them out.
    """

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:  # type: ignore[override]
        """Skip the cookie for a >= 400 answer to a request that sent none."""
        if response.status_code >= 400 and self.get_cookie_name(app) not in request.cookies:
            return
        super().save_session(app, session, response)


def csrf_token() -> str:
    """The session's CSRF token (Flask-WTF; created on first use)."""
    token: str = generate_csrf()
    return token


def new_csrf_token() -> str:
    """A CSRF token for a session that was just cleared (log-in: new identity, new token)."""
    g.pop(CSRF_FIELD, None)  # Flask-WTF caches the request's token in g
    return csrf_token()


def check_csrf() -> None:
    """``before_request`` hook: unsafe cookie-authenticated requests need a valid token."""
    if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT_ENDPOINTS:
        return
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return  # bearer-token requests carry no ambient (cookie) credentials
    csrf.protect()


def _csrf_failed(exc: CSRFError) -> Any:
    from web.errors import error_response

    _LOGGER.info("CSRF check failed on %s %s: %s", request.method, request.path, exc.description)
    return error_response(400, CSRF_MESSAGE)


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
    """Sessions, the size and CSRF checks, the headers and the ``csrf_token`` template global."""
    app.session_interface = ErrorSafeSessionInterface()
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # check_csrf decides (bearer requests are exempt)
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session (itself limited)
        WTF_CSRF_HEADERS=[CSRF_HEADER, "X-CSRFToken"],
        WTF_CSRF_FIELD_NAME=CSRF_FIELD,
    )
    csrf.init_app(app)
    app.before_request(check_size)
    app.before_request(check_csrf)
    app.after_request(set_security_headers)
    app.register_error_handler(CSRFError, _csrf_failed)
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
