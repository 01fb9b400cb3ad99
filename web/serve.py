"""``medchain web`` under gunicorn: one process (the live hub is in memory), many threads.

gunicorn's ``gthread`` worker serves each request on a thread of a pool (an SSE client holds
one for the life of its stream). The app is built inside the worker, after the fork, so that
its MQTT feed thread and store pool belong to the process that serves. On SIGTERM the worker
first ends every open live stream (otherwise they would hold the graceful shutdown for up to
``sse_max_stream_s``), then gunicorn finishes the requests in flight; SIGINT (Ctrl-C) stops at
once. Either way the worker closes the feed and the store when it exits.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from web.settings import WebSettings

_LOGGER = logging.getLogger(__name__)

GRACEFUL_TIMEOUT_S = 5  # what a SIGTERM waits for requests in flight (streams are ended first)


def _close(app: Flask) -> None:
    """End the live streams; stop the feed; close the store (idempotent)."""
    app.extensions["medchain.hub"].fanout.close_all()
    feed = app.extensions["medchain.feed"]
    if feed is not None:
        feed.stop()
    app.extensions["medchain.store"].close()


def _post_worker_init(worker: Any) -> None:
    """gunicorn hook: on SIGTERM end the live streams before the worker's own handler runs."""
    app: Flask = worker.wsgi
    handler = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        app.extensions["medchain.hub"].fanout.close_all()
        if callable(handler):
            handler(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def _worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: release the app's resources in the exiting worker."""
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        _close(app)


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn with options from a dict and the app from a factory (no config file, no argv)."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def gunicorn_options(settings: WebSettings) -> dict[str, Any]:
    """gunicorn settings for ``medchain web`` (one worker, ``settings.threads`` threads)."""
    return {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.threads,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "medchain-web",
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
    }


def run(factory: Callable[[], Flask], settings: WebSettings) -> None:
    """Serve ``factory()``'s app with gunicorn until SIGINT or SIGTERM (returns then)."""
    _Server(factory, gunicorn_options(settings)).run()
