"""Accessors for the app's resources (see ``web.app``)."""

from __future__ import annotations

from flask import current_app

from web.auth import store
from web.delivery import LiveFeed
from web.live.hub import LiveHub
from web.settings import WebSettings

__all__ = ["feed", "hub", "settings", "store"]


def hub() -> LiveHub:
    """The in-memory live state."""
    h: LiveHub = current_app.extensions["medchain.hub"]
    return h


def feed() -> LiveFeed | None:
    """The live feed adapter (None when no broker is configured)."""
    f: LiveFeed | None = current_app.extensions["medchain.feed"]
    return f


def settings() -> WebSettings:
    """The app's settings."""
    s: WebSettings = current_app.extensions["medchain.settings"]
    return s
