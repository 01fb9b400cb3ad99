"""The web app factory: ``create_app(settings, store=..., feed=...)``.

Resources live in ``app.extensions`` under ``medchain.*``: the store, the live hub and its
fan-out, the live feed (MQTT adapter, or a fake in tests) and the log-in limiter. Views get
them through small accessors so tests can inject fakes.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Flask, redirect, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers.response import Response as WerkzeugResponse

from store.base import Store
from web import auth, errors, limits, security
from web.delivery import LiveFeed, redeliver
from web.live.fanout import Fanout
from web.live.hub import LiveHub
from web.settings import WebSettings
from web.views.forms import Int64Converter

_LOGGER = logging.getLogger(__name__)


def create_app(
    settings: WebSettings | None = None,
    *,
    store: Store | None = None,
    feed: LiveFeed | None = None,
    hub: LiveHub | None = None,
    start_feed: bool = True,
) -> Flask:
    """Build the Flask app.

    Raises
    ------
    ConfigError
        A weak ``secret_key`` or an unusable ``ratelimit_storage_uri``.

    Parameters
    ----------
    settings : WebSettings, optional
        Defaults when omitted.
    store : Store, optional
        Opened from ``settings.store_url`` when omitted (the app then owns it).
    feed : LiveFeed, optional
        The live feed; when omitted and ``settings.broker_url`` is set, an MQTT feed feeding
        ``hub`` is created (the aggregator's ingestion writes reports into the store).
    hub : LiveHub, optional
        The in-memory live state; a new one when omitted.
    start_feed : bool
        Start the feed created here (connects in the background, retrying).
    """
    settings = settings or WebSettings()
    app = Flask(__name__)
    app.url_map.converters["int"] = Int64Converter
    secret = settings.secret_key
    if secret:
        security.check_secret_key(secret)
    else:
        _LOGGER.warning("no secret key set (MEDCHAIN_WEB_SECRET_KEY): sessions end on restart")
        secret = secrets.token_hex(32)
    limits.check_storage_uri(settings.ratelimit_storage_uri)
    if settings.trusted_proxies > 0:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=secret,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_NAME="medchain_session",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_lifetime_s),
    )
    if store is None:
        from store.factory import open_store

        store = open_store(settings.store_url)
    fanout = Fanout(
        settings.sse_max_clients, settings.sse_queue_size, settings.sse_max_per_principal
    )
    hub = hub or LiveHub(settings.ring_seconds, settings.recent_events, fanout)
    if feed is None and settings.broker_url:
        feed = _mqtt_feed(settings, store, hub, start_feed)
    app.extensions.update({
        "medchain.settings": settings,
        "medchain.store": store,
        "medchain.hub": hub,
        "medchain.feed": feed,
    })  # fmt: skip

    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    security.install(app)
    errors.install(app)
    app.before_request(auth.load_principal)
    app.context_processor(lambda: _page_context(settings))

    from web.views import account, federation, labels, mine, patients, tokens

    for bp in (account.bp, patients.bp, mine.bp, labels.bp, federation.bp, tokens.bp):
        app.register_blueprint(bp)
    app.extensions["medchain.limiter"] = limits.install(app, settings)
    app.add_url_rule("/", "index", _index)
    app.add_url_rule("/healthz", "healthz", _healthz)
    return app


def _mqtt_feed(settings: WebSettings, store: Store, hub: LiveHub, start: bool) -> LiveFeed:
    from web.live.mqtt_feed import MqttLiveFeed

    mqtt_feed = MqttLiveFeed(settings.broker_url, [hub], label_qos=settings.label_qos,
                             ca_file=settings.broker_ca_file or None)  # fmt: skip

    def resend() -> None:
        redeliver(store, mqtt_feed)

    mqtt_feed.on_connected = resend
    mqtt_feed.on_tick = resend
    if start:
        mqtt_feed.start()
    return mqtt_feed


def _page_context(settings: WebSettings) -> dict[str, object]:
    """Template globals: the caller, the settings, and for a patient whether their data is
    simulated (every page they see then says so; views pass ``simulated`` for clinicians)."""
    p = auth.current()
    out: dict[str, object] = {"principal": p, "settings": settings}
    if p is not None and not p.is_clinician:
        from web.views.patients import simulated

        out["simulated"] = simulated(p.client_id, auth.store().get_client(p.client_id))
    return out


def _index() -> WerkzeugResponse:
    p = auth.current()
    if p is None:
        return redirect(url_for("auth.login"))
    if p.is_clinician:
        return redirect(url_for("patients.index"))
    return redirect(url_for("patients.patient", client_id=p.client_id))


def _healthz() -> dict[str, object]:
    from flask import current_app

    feed: LiveFeed | None = current_app.extensions["medchain.feed"]
    return {"ok": True, "broker_connected": bool(feed and feed.connected)}
