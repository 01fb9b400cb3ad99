"""Settings of the web service: one frozen dataclass filled by ``common.config.load_settings``.

Environment variables are ``MEDCHAIN_WEB_{FIELD}`` (e.g. ``MEDCHAIN_WEB_SECRET_KEY``); a TOML
file may hold a ``[web]`` table. Only the CLI passes ``os.environ`` in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import load_settings

ENV_PREFIX = "MEDCHAIN_WEB"


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Everything the web app and its live feed need.

    Attributes
    ----------
    store_url : str
        ``sqlite:///path`` or ``postgresql://...`` (see ``store.open_store``).
    broker_url : str
        ``mqtt[s]://[user[:password]@]host[:port]`` of the broker carrying live/pred/status;
        empty disables the feed. ``mqtts`` = TLS with certificate verification.
    broker_ca_file : str
        CA bundle for ``mqtts`` (empty: the system trust store).
    host, port : str, int
        Where ``medchain web`` listens.
    secret_key : str
        Signs the session cookie and the CSRF tokens. Empty means a random key per process
        (sessions end on restart); set it in production (at least 32 random characters: a
        short or common key is refused).
    session_cookie_secure : bool
        Send the session cookie over HTTPS only (set behind a TLS proxy).
    session_lifetime_s : int
        Lifetime of a log-in session in seconds.
    max_content_length : int
        Largest accepted request body in bytes (larger gets 413).
    ring_seconds : float
        Length of the live signal kept per patient and stream, in s.
    recent_events : int
        Events and flagged beats kept in memory per patient.
    sse_keepalive_s : float
        Interval of SSE keep-alive comments in s (proxies close silent connections).
    sse_queue_size : int
        Messages buffered per SSE client before the oldest are dropped (slow client).
    sse_max_clients : int
        Concurrent SSE streams the process serves (each holds a worker thread).
    sse_retry_ms : int
        Reconnect delay the browser's EventSource is told to use, in ms.
    sse_max_stream_s : float
        A stream ends after this many s (the browser reconnects); frees threads of dead clients.
    sse_max_per_principal : int
        Concurrent SSE streams of one clinician or one patient (429 beyond), so that one
        account or access code cannot take every slot.
    sse_auth_recheck_s : float
        Interval in s at which an open stream re-checks its credentials (a revoked code, a
        disabled account or a log-out ends the stream within it).
    threads : int
        Worker threads of ``medchain web`` (gunicorn, one process); each SSE stream holds one,
        so keep it above ``sse_max_clients``.
    trusted_proxies : int
        Reverse proxies in front of the app whose ``X-Forwarded-For``/``-Proto``/``-Host`` are
        believed (werkzeug ``ProxyFix``); 0 = the socket peer is the client. Behind the
        documented TLS proxy set 1, or every client shares the proxy's address.
    ratelimit_storage_uri : str
        Flask-Limiter storage of the log-in counters: ``memory://`` (one process) or
        ``redis://host:6379`` (shared by several workers or hosts).
    login_limit_account : str
        Log-in attempts allowed per username (Flask-Limiter notation), counted at the start of
        each attempt, so parallel guesses are counted too.
    login_limit_address : str
        Log-in attempts (clinician or patient code) allowed per client address.
    label_qos : int
        MQTT QoS of label delivery.
    tasks, strategies : tuple of str
        Choices offered by the training controls.
    """

    store_url: str = "sqlite:///medchain.db"  # the store's default: shared with the aggregator
    broker_url: str = "mqtt://127.0.0.1:1883"
    broker_ca_file: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str = ""
    session_cookie_secure: bool = False
    session_lifetime_s: int = 12 * 3600
    max_content_length: int = 1024 * 1024
    ring_seconds: float = 10.0
    recent_events: int = 50
    sse_keepalive_s: float = 15.0
    sse_queue_size: int = 256
    sse_max_clients: int = 64
    sse_retry_ms: int = 2000
    sse_max_stream_s: float = 300.0
    sse_max_per_principal: int = 4
    sse_auth_recheck_s: float = 5.0
    threads: int = 96
    trusted_proxies: int = 0
    ratelimit_storage_uri: str = "memory://"
    login_limit_account: str = "5 per 5 minutes"
    login_limit_address: str = "20 per 5 minutes"
    label_qos: int = 1
    tasks: tuple[str, ...] = ("beat", "ptb", "aft", "rhythm", "ppg_hr", "activity")
    strategies: tuple[str, ...] = (
        "fedavg",
        "fedprox",
        "fedadam",
        "fedyogi",
        "median",
        "trimmed_mean",
    )


def load_web_settings(
    env: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> WebSettings:
    """Build :class:`WebSettings` from defaults, a ``[web]`` TOML table, env and overrides."""
    return load_settings(
        WebSettings,
        env=env,
        prefix=ENV_PREFIX,
        toml_path=toml_path,
        table="web",
        overrides=overrides,
    )
