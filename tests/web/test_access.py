"""Access rules: every page and API checks who is asking (parametrised over routes and roles)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import login, login_patient

# (method, path, anonymous, patient p1, clinician, admin) expected status codes.
# Pages send anonymous browsers to the log-in form (302); the API answers 401.
RULES = [
    ("GET", "/patients", 302, 403, 200, 200),
    ("GET", "/patients/p1", 302, 200, 200, 200),
    ("GET", "/patients/p2", 302, 403, 200, 200),
    ("GET", "/labels", 302, 403, 200, 200),
    ("GET", "/federation", 302, 403, 200, 200),
    ("GET", "/api/patients", 401, 403, 200, 200),
    ("GET", "/api/patients/p1", 401, 200, 200, 200),
    ("GET", "/api/patients/p2", 401, 403, 200, 200),
    ("GET", "/api/patients/p1/live", 401, 200, 200, 200),
    ("GET", "/api/patients/p2/live", 401, 403, 200, 200),
    ("GET", "/api/patients/p1/predictions", 401, 200, 200, 200),
    ("GET", "/api/patients/p2/events", 401, 403, 200, 200),
    ("GET", "/api/patients/p1/flagged", 401, 200, 200, 200),
    ("GET", "/api/patients/p1/labels", 401, 200, 200, 200),
    ("GET", "/api/patients/p2/labels", 401, 403, 200, 200),
    ("GET", "/api/patients/p2/stream", 401, 403, 200, 200),
    ("GET", "/api/labels/review", 401, 403, 200, 200),
    ("GET", "/api/federation", 401, 403, 200, 200),
    ("GET", "/api/federation/rounds", 401, 403, 200, 200),
    ("GET", "/api/federation/metrics", 401, 403, 200, 200),
    ("GET", "/api/federation/models", 401, 403, 200, 200),
    ("GET", "/api/federation/control", 401, 403, 200, 200),
    ("GET", "/api/federation/audit", 401, 403, 403, 200),
    ("POST", "/api/federation/control", 401, 403, 403, 200),
    ("POST", "/api/federation/clients/p1", 401, 403, 403, 200),
    ("POST", "/federation/control", 302, 403, 403, 302),
    ("POST", "/api/labels", 401, 403, 201, 201),
    ("GET", "/api/patients/p1/tokens", 401, 403, 200, 200),
    ("POST", "/api/patients/p1/tokens", 401, 403, 201, 201),
    ("POST", "/patients/p1/tokens", 302, 403, 200, 200),
]
ROLES = ["anonymous", "patient", "clinician", "admin"]
BODIES = {
    "/api/federation/control": {
        "action": "save",
        "task": "beat",
        "strategy": "fedavg",
        "rounds": 3,
    },
    "/federation/control": {"action": "save", "task": "beat", "strategy": "fedavg", "rounds": "3"},
    "/api/federation/clients/p1": {"task": "ptb", "dataset": "ptb"},
    "/api/patients/p1/tokens": {"days": 1},
    "/patients/p1/tokens": {"days": "1"},
    "/api/labels": {"client_id": "p1", "target": "event", "t_ns": 5, "label": "vt_run"},
}


def _as(client: FlaskClient, role: str, patient_token: str) -> None:
    if role == "patient":
        login_patient(client, patient_token)
    elif role == "clinician":
        login(client, "alice")
    elif role == "admin":
        login(client, "root")


@pytest.mark.parametrize("role_index", range(4), ids=ROLES)
@pytest.mark.parametrize(
    ("method", "path", "a", "p", "c", "d"), RULES, ids=[f"{m} {p}" for m, p, *_ in RULES]
)
def test_access_rule(client: FlaskClient, store, patient_token: str, role_index: int,
                     method: str, path: str, a: int, p: int, c: int, d: int) -> None:  # fmt: skip
    # Prepare
    from tests.web.conftest import csrf_of, event

    store.insert_events([event(5)])
    _as(client, ROLES[role_index], patient_token)
    expected = (a, p, c, d)[role_index]
    # Execute
    if method == "GET":
        resp = client.get(path)
    else:
        body = BODIES[path]
        token = csrf_of(client)
        if path.startswith("/api/"):
            resp = client.post(path, json=body, headers={"X-CSRF-Token": token})
        else:
            resp = client.post(path, data=body | {"csrf_token": token})
    # Assert
    assert resp.status_code == expected, resp.data[:300]
    if expected == 302 and ROLES[role_index] == "anonymous":
        assert "/login" in resp.headers["Location"]
    if expected in (401, 403) and path.startswith("/api/"):
        assert resp.get_json()["error"]["code"] == expected


@pytest.mark.parametrize(
    "path", ["/api/patients/p1", "/api/patients/p1/live", "/api/patients/p1/labels"]
)
def test_bearer_token_opens_own_data_only(
    client: FlaskClient, patient_token: str, path: str
) -> None:
    # Prepare
    headers = {"Authorization": f"Bearer {patient_token}"}
    # Execute
    own = client.get(path, headers=headers)
    other = client.get(path.replace("p1", "p2"), headers=headers)
    # Assert
    assert own.status_code == 200
    assert other.status_code == 403


@pytest.mark.parametrize("token", ["", "x", "not-a-real-token-" * 3, "a" * 300])
def test_bad_bearer_token_is_401(client: FlaskClient, token: str) -> None:
    # Execute
    resp = client.get("/api/patients/p1", headers={"Authorization": f"Bearer {token}"})
    # Assert
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == 401


def test_revoked_token_loses_access_at_once(client: FlaskClient, store, patient_token: str) -> None:
    # Prepare
    from web.security import hash_patient_token

    login_patient(client, patient_token)
    assert client.get("/patients/p1").status_code == 200
    # Execute
    store.revoke_patient_token(hash_patient_token(patient_token))
    resp = client.get("/patients/p1")
    # Assert
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_disabled_clinician_loses_access(client: FlaskClient, store) -> None:
    # Prepare
    login(client, "alice")
    # Execute
    store.set_user_active("alice", False)
    resp = client.get("/api/patients")
    # Assert
    assert resp.status_code == 401
