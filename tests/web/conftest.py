"""Fixtures of the web tests: a real SqliteStore in tmp_path, a fake live feed, app, client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from common.payloads import Label
from common.types import BeatPrediction, Event, SignalChunk, StreamKind
from store.base import Store
from store.factory import open_store
from web.app import create_app
from web.live.hub import LiveHub
from web.security import new_patient_token
from web.settings import WebSettings

PASSWORD = "correct horse battery"
SECRET = "web-tests-3f9c1a7e5b2d4c6e8a0f1b3d5e7c9a2b"  # strong enough for create_app's check
# A cheap hash for fixtures (scrypt costs ~0.2 s per call); the real hashing has its own test.
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
T0_NS = 1_700_000_000_000_000_000


@dataclass
class FakeFeed:
    """Stands in for the MQTT adapter: records published labels."""

    up: bool = True
    published: list[Label] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.up

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish_label(self, label: Label, timeout: float = 5.0) -> bool:
        if not self.up:
            return False
        self.published.append(label)
        return True


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'web.db'}")
    yield st
    st.close()


@pytest.fixture()
def feed() -> FakeFeed:
    return FakeFeed()


@pytest.fixture()
def settings() -> WebSettings:
    return WebSettings(secret_key=SECRET, broker_url="", max_content_length=64 * 1024,
                       sse_keepalive_s=0.05, sse_max_stream_s=0.3)  # fmt: skip


@pytest.fixture()
def app(settings: WebSettings, store: Store, feed: FakeFeed) -> Flask:
    application = create_app(settings, store=store, feed=feed)
    application.config["TESTING"] = True
    store.create_user("alice", FAST_HASH, role="clinician")
    store.create_user("root", FAST_HASH, role="admin")
    store.register_client("p1", task="beat", dataset="mitdb")
    store.register_client("p2", task="beat", dataset="mitdb")
    return application


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def hub(app: Flask) -> LiveHub:
    h: LiveHub = app.extensions["medchain.hub"]
    return h


@pytest.fixture()
def patient_token(store: Store) -> str:
    token, token_hash = new_patient_token()
    store.create_patient_token(token_hash, "p1", expires_at=None)
    return token


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token a page of the client's session carries (``<meta name="csrf-token">``)."""
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, page[:300]
    return match.group(1)


def login(client: FlaskClient, username: str = "alice") -> None:
    resp = client.post("/login", data={"username": username, "password": PASSWORD,
                                        "csrf_token": csrf_of(client)})  # fmt: skip
    assert resp.status_code == 302, resp.data


def login_patient(client: FlaskClient, token: str) -> None:
    resp = client.post("/patient/login", data={"token": token, "csrf_token": csrf_of(client)})
    assert resp.status_code == 302, resp.data


def ecg_chunk(seq: int, n: int = 25, fs: float = 125.0) -> SignalChunk:
    """A deterministic ECG-like chunk (µV) starting at sample ``seq``."""
    t = (seq + np.arange(n)) / fs
    samples = (800.0 * np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0005))[:, None]
    return SignalChunk(StreamKind.ECG, fs, T0_NS + round(seq * 1e9 / fs), samples, seq)


def beat(t_ns: int, label: str = "N", client_id: str = "p1", rr_s: float = 0.8) -> BeatPrediction:
    probs = {c: (0.9 if c == label else 0.025) for c in ("N", "S", "V", "F", "Q")}
    return BeatPrediction(client_id, t_ns, 0, label, probs, "v1", rr_s)


def event(t_ns: int, kind: str = "vt_run", client_id: str = "p1") -> Event:
    return Event(
        f"{client_id}:{kind}:{t_ns}", client_id, kind, t_ns, t_ns + 2_000_000_000, {"beats": 4}
    )
