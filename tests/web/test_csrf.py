"""CSRF and cookie integrity: Flask-WTF's CSRFProtect on every cookie-authenticated POST,
no log-in CSRF, no cross-site log-out, and no weak secret key signing the cookies."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.errors import ConfigError
from store.base import Store
from tests.web.conftest import PASSWORD, SECRET, FakeFeed, csrf_of, login
from web.app import create_app
from web.settings import WebSettings


def test_csrf_is_flask_wtf(app: Flask) -> None:
    # Assert: the well-kept library, not hand-written code, checks the tokens
    from flask_wtf.csrf import CSRFProtect

    assert isinstance(app.extensions.get("csrf"), CSRFProtect)


def test_form_token_and_header_token_both_work(client: FlaskClient, store: Store) -> None:
    # Prepare
    login(client, "root")
    token = csrf_of(client)
    body = {"action": "save", "task": "beat", "strategy": "fedavg", "rounds": "3"}
    # Execute
    form = client.post("/federation/control", data=body | {"csrf_token": token})
    header = client.post("/api/federation/control", json=body, headers={"X-CSRF-Token": token})
    # Assert
    assert form.status_code == 302 and header.status_code == 200
    assert store.get_training_control().generation == 2


def test_token_of_another_session_is_refused(app: Flask, client: FlaskClient, store: Store) -> None:
    # Prepare: the attacker's own valid token
    attacker = app.test_client()
    login(attacker, "alice")
    foreign = csrf_of(attacker)
    login(client, "root")
    # Execute
    resp = client.post("/api/federation/control", json={"action": "start", "task": "beat",
                       "strategy": "fedavg", "rounds": 5}, headers={"X-CSRF-Token": foreign})  # fmt: skip
    # Assert
    assert resp.status_code == 400 and store.get_training_control().generation == 0


def test_api_login_refuses_a_cross_site_form_body(client: FlaskClient) -> None:
    # Execute: what an attacker's page can send without a preflight (log-in CSRF)
    form = client.post("/api/login", data={"username": "alice", "password": PASSWORD})
    plain = client.post("/api/login", data='{"username": "alice", "password": "' + PASSWORD + '"}',
                        content_type="text/plain")  # fmt: skip
    # Assert
    assert form.status_code == 415 and plain.status_code == 415
    assert client.get("/api/me").status_code == 401


def test_cross_site_post_does_not_replace_the_victims_cookie(
    app: Flask, client: FlaskClient
) -> None:
    # Prepare: the victim is logged in; SameSite=Lax keeps the cookie off a cross-site POST
    login(client)
    cross_site = app.test_client()  # a request without the victim's cookie
    # Execute
    resp = cross_site.post("/logout")
    # Assert: refused, and no new session cookie that would overwrite the victim's
    assert resp.status_code == 400
    assert "medchain_session" not in resp.headers.get("Set-Cookie", "")
    assert client.get("/api/patients").status_code == 200


@pytest.mark.parametrize(
    "key", ["changeme", "changemechangemechangemechangeme", "secret", "a" * 64, "0123456789"]
)
def test_weak_secret_key_is_refused(store: Store, key: str) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="MEDCHAIN_WEB_SECRET_KEY"):
        create_app(WebSettings(secret_key=key, broker_url=""), store=store, feed=FakeFeed())


def test_strong_secret_key_is_accepted(store: Store) -> None:
    # Execute
    app = create_app(WebSettings(secret_key=SECRET, broker_url=""), store=store, feed=FakeFeed())
    # Assert
    assert app.secret_key == SECRET
