"""Log-in, sessions, CSRF, throttling and password/token hashing."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import PASSWORD, csrf_of, login
from web.security import hash_password, hash_patient_token, new_patient_token, verify_password


def test_password_hash_round_trip_and_minimum_length() -> None:
    # Execute
    h = hash_password("a long enough secret")
    # Assert
    assert h.startswith("scrypt:") and "a long enough secret" not in h
    assert verify_password(h, "a long enough secret")
    assert not verify_password(h, "a long enough secreT")
    with pytest.raises(ValueError, match="at least"):
        hash_password("short")


def test_patient_token_is_random_and_stored_as_hash() -> None:
    # Execute
    t1, h1 = new_patient_token()
    t2, h2 = new_patient_token()
    # Assert: short and typeable, yet 80 random bits (16 characters of a 32-letter alphabet)
    from web.access_codes import ALPHABET, CODE_BITS

    assert t1 != t2 and CODE_BITS == 80 and len(t1.replace("-", "")) * 5 == CODE_BITS
    assert set(t1.replace("-", "")) <= set(ALPHABET) and len(ALPHABET) == 32
    assert h1 == hash_patient_token(t1) and len(h1) == 64 and t1 not in h1


def test_login_sets_session_and_redirects_to_next(client: FlaskClient) -> None:
    # Execute
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                        "csrf_token": csrf_of(client), "next": "/federation"})  # fmt: skip
    # Assert
    assert resp.status_code == 302 and resp.headers["Location"] == "/federation"
    assert client.get("/federation").status_code == 200


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"]
)
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    # Execute
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                        "csrf_token": csrf_of(client), "next": target})  # fmt: skip
    # Assert
    assert resp.headers["Location"] == "/patients"


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong password!"), ("nobody", PASSWORD)]
)
def test_wrong_credentials_are_refused_with_a_message(
    client: FlaskClient, username: str, password: str
) -> None:
    # Execute
    resp = client.post("/login", data={"username": username, "password": password,
                                        "csrf_token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 401
    assert b"Wrong username or password" in resp.data
    assert client.get("/api/patients").status_code == 401


def test_login_without_csrf_token_is_rejected(client: FlaskClient) -> None:
    # Execute
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD})
    # Assert
    assert resp.status_code == 400
    assert b"reload the page" in resp.data


def test_post_with_wrong_csrf_token_changes_nothing(client: FlaskClient, store) -> None:
    # Prepare
    login(client, "root")
    # Execute
    resp = client.post("/api/federation/control", json={"action": "start", "task": "beat",
                       "strategy": "fedavg", "rounds": 5}, headers={"X-CSRF-Token": "forged"})  # fmt: skip
    # Assert
    assert resp.status_code == 400
    assert store.get_training_control().generation == 0


def test_logout_ends_the_session(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.post("/logout", data={"csrf_token": csrf_of(client)})
    # Assert
    assert resp.status_code == 302
    assert client.get("/api/patients").status_code == 401


def test_api_login_returns_csrf_token_for_later_posts(client: FlaskClient, store) -> None:
    # Execute
    resp = client.post("/api/login", json={"username": "root", "password": PASSWORD})
    token = resp.get_json()["csrf_token"]
    changed = client.post("/api/federation/control", json={"action": "start", "task": "beat",
                          "strategy": "fedavg", "rounds": 2}, headers={"X-CSRF-Token": token})  # fmt: skip
    # Assert
    assert resp.status_code == 200 and resp.get_json()["role"] == "admin"
    assert changed.status_code == 200
    assert client.get("/api/me").get_json()["name"] == "root"


def test_api_login_failure_is_json_401(client: FlaskClient) -> None:
    # Execute
    resp = client.post("/api/login", json={"username": "root", "password": "nope nope nope"})
    # Assert
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == 401


def test_throttle_blocks_after_repeated_failures(client: FlaskClient) -> None:
    # Prepare
    for _ in range(5):
        client.post("/api/login", json={"username": "alice", "password": "wrong wrong wrong"})
    # Execute
    resp = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    # Assert: refused before the password is checked (Flask-Limiter; more in test_login_limits)
    assert resp.status_code == 429
    assert client.get("/api/me").status_code == 401


def test_patient_login_with_bad_code_is_refused(client: FlaskClient) -> None:
    # Execute
    resp = client.post("/patient/login", data={"token": "guess", "csrf_token": csrf_of(client)})
    # Assert
    assert resp.status_code == 401 and b"not valid" in resp.data


def test_patient_lands_on_own_page(client: FlaskClient, patient_token: str) -> None:
    # Execute
    resp = client.post(
        "/patient/login", data={"token": patient_token, "csrf_token": csrf_of(client)}
    )
    # Assert
    assert resp.headers["Location"] == "/patients/p1"
    assert client.get("/").headers["Location"] == "/patients/p1"


def test_security_headers_on_pages(client: FlaskClient) -> None:
    # Execute
    resp = client.get("/login")
    # Assert
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "HttpOnly" in resp.headers.get("Set-Cookie", "")
