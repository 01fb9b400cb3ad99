"""Log-in rate limits with Flask-Limiter: per account and per client address.

Every attempt is counted when it starts (an atomic hit in the limiter's storage), so fifty
guesses sent at once are counted as fifty, not as the few that had failed when the others were
checked. The account limit holds however many addresses an attacker rotates through; the
address limit stops one address spraying many accounts or patient codes. Counters live in
``ratelimit_storage_uri``: ``memory://`` for one process, ``redis://`` to share them between
workers or hosts. The address is the socket peer, or the one the configured number of trusted
proxies forwarded (werkzeug ``ProxyFix``, installed by ``web.app``).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from common.errors import ConfigError
from web.settings import WebSettings
from web.views.forms import USERNAME_MAX_LEN, json_body

_LOGGER = logging.getLogger(__name__)

ACCOUNT_LOGINS = ("auth.login", "auth.api_login")
ADDRESS_LOGINS = ("auth.login", "auth.api_login", "auth.patient_login")
MESSAGE = "Too many log-in attempts: wait a few minutes and try again."


def _account_key() -> str:
    """The username an attempt is for (form or JSON body; bounded)."""
    if request.is_json:
        data = json_body()
        name = data.get("username") if isinstance(data, dict) else None
    else:
        name = request.form.get("username")
    # as the log-in reads it (stripped): " alice" must count against alice's limit
    return "account:" + (name.strip()[:USERNAME_MAX_LEN] if isinstance(name, str) else "")


def _address_key() -> str:
    return "address:" + (get_remote_address() or "unknown")


def _refused(exc: RateLimitExceeded) -> Any:
    from web.errors import error_response

    _LOGGER.warning("log-in throttled: %s %s from %s (%s)", request.method, request.path,
                    request.remote_addr, exc.description)  # fmt: skip
    return error_response(429, MESSAGE)


def check_storage_uri(uri: str) -> None:
    """Raise ConfigError if ``uri`` names no storage the ``limits`` library can use."""
    try:
        storage_from_string(uri)
    except (ConfigurationError, ValueError) as exc:
        raise ConfigError(f"ratelimit_storage_uri {uri!r}: {exc}") from exc


def install(app: Flask, settings: WebSettings) -> Limiter:
    """Attach a limiter to ``app`` and limit its log-in views (call after the blueprints)."""
    limiter = Limiter(key_func=_address_key, app=app, storage_uri=settings.ratelimit_storage_uri,
                      strategy="moving-window", key_prefix="medchain-web")  # fmt: skip
    account = limiter.shared_limit(settings.login_limit_account, scope="login-account",
                                   key_func=_account_key, methods=["POST"])  # fmt: skip
    address = limiter.shared_limit(settings.login_limit_address, scope="login-address",
                                   key_func=_address_key, methods=["POST"])  # fmt: skip
    for endpoint in ADDRESS_LOGINS:
        view: Any = address(app.view_functions[endpoint])
        app.view_functions[endpoint] = account(view) if endpoint in ACCOUNT_LOGINS else view
    app.register_error_handler(RateLimitExceeded, _refused)
    return limiter
