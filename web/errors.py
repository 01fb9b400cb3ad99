"""Error pages and JSON errors: every failure gets a clear message, never a stack trace.

JSON is returned for ``/api/`` paths and for clients that prefer ``application/json``; pages
get ``error.html``. An anonymous browser hitting a page is sent to the log-in form instead of
a bare 401. Store errors map to HTTP: not found 404, conflict 409, unavailable 503.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers.response import Response as WerkzeugResponse

from store.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)

_LOGGER = logging.getLogger(__name__)

MESSAGES = {
    400: "The request was malformed.",
    401: "Please log in.",
    403: "You do not have access to this page.",
    404: "This page or patient does not exist.",
    405: "This method is not allowed here.",
    409: "This conflicts with existing data.",
    413: "The upload is too large.",
    415: "Send this request as JSON.",
    429: "Too many requests: wait a little and retry.",
    503: "A service this page needs is unavailable; retry shortly.",
}


def wants_json() -> bool:
    """True for API paths and for clients that prefer JSON to HTML."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(code: int, message: str) -> tuple[Response | str, int] | WerkzeugResponse:
    """A JSON error or an error page with ``code`` and a human-readable ``message``."""
    if wants_json():
        return jsonify(error={"code": code, "message": message}), code
    if code == 401:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return render_template("error.html", code=code, message=message), code


def _http(exc: HTTPException) -> tuple[Response | str, int] | WerkzeugResponse:
    code = exc.code or 500
    message = exc.description if exc.description and code != 500 else MESSAGES.get(code, "")
    if code == 413:
        message = MESSAGES[413]
    resp = error_response(code, message or MESSAGES.get(code, "Error."))
    return resp


def _store(exc: StoreError) -> tuple[Response | str, int] | WerkzeugResponse:
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc))
    if isinstance(exc, ConflictError):
        return error_response(409, str(exc))
    if isinstance(exc, StoreUnavailableError):
        _LOGGER.error("store unavailable: %s", exc)
        return error_response(503, MESSAGES[503])
    _LOGGER.exception("store error on %s %s", request.method, request.path)
    return error_response(500, "The store failed; the error was logged.")


def _unexpected(exc: Exception) -> tuple[Response | str, int] | WerkzeugResponse:
    if isinstance(exc, HTTPException):
        return _http(exc)
    _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "Something went wrong; the error was logged.")


def install(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(StoreError, _store)
    app.register_error_handler(InternalServerError, _unexpected)
    app.register_error_handler(Exception, _unexpected)
