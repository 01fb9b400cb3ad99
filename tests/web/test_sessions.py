"""Server-side revocation of signed-cookie sessions: log-out and a password change end every
copy of a session (the cookie carries a generation the store must still hold)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from store.base import Store
from tests.web.conftest import csrf_of, login, login_patient


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("medchain_session")
    assert cookie is not None
    return cookie.value


def _replay(app: Flask, cookie: str) -> FlaskClient:
    """A second browser that holds a copy of ``cookie`` (e.g. stolen before the log-out)."""
    other = app.test_client()
    other.set_cookie("medchain_session", cookie)
    return other


def test_logout_ends_every_copy_of_the_session(app: Flask, client: FlaskClient) -> None:
    # Prepare
    login(client)
    copy = _replay(app, _cookie(client))
    assert copy.get("/api/patients").status_code == 200
    # Execute
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    # Assert
    assert copy.get("/api/patients").status_code == 401


def test_api_logout_ends_every_copy_of_the_session(app: Flask, client: FlaskClient) -> None:
    # Prepare
    login(client)
    copy = _replay(app, _cookie(client))
    # Execute
    resp = client.post("/api/logout", headers={"X-CSRF-Token": csrf_of(client)})
    # Assert
    assert resp.status_code == 200
    assert copy.get("/api/patients").status_code == 401


def test_password_change_ends_open_sessions(app: Flask, client: FlaskClient, store: Store) -> None:
    # Prepare
    login(client)
    # Execute
    store.set_user_password("alice", "pbkdf2:sha256:1000$new$hash")
    # Assert
    assert client.get("/api/patients").status_code == 401


def test_a_new_login_after_logout_works(app: Flask, client: FlaskClient) -> None:
    # Prepare
    login(client)
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    # Execute
    login(client)
    # Assert
    assert client.get("/api/patients").status_code == 200


def test_patient_logout_ends_copies_of_the_patient_session(
    app: Flask, client: FlaskClient, patient_token: str
) -> None:
    # Prepare
    login_patient(client, patient_token)
    copy = _replay(app, _cookie(client))
    assert copy.get("/api/patients/p1").status_code == 200
    # Execute
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    # Assert
    assert copy.get("/api/patients/p1").status_code == 401
    assert client.get("/api/patients/p1").status_code == 401
