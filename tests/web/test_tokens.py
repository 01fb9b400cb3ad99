"""Patient access codes managed by clinicians: create (shown once), list, revoke."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import csrf_of, login, login_patient
from web.security import hash_patient_token


def test_clinician_creates_code_that_opens_only_that_patient(
    app, client: FlaskClient, store
) -> None:
    # Prepare
    login(client)
    # Execute
    page = client.post(
        "/patients/p2/tokens", data={"days": "30", "label": "clinic", "csrf_token": csrf_of(client)}
    )
    token = re.search(r'id="new-token">([^<]+)<', page.get_data(as_text=True)).group(1)
    patient = app.test_client()
    login_patient(patient, token)
    # Assert
    rec = store.get_patient_token(hash_patient_token(token))
    assert rec.client_id == "p2" and rec.label == "clinic" and rec.expires_at is not None
    assert (
        patient.get("/patients/p2").status_code == 200
        and patient.get("/patients/p1").status_code == 403
    )
    assert store.list_audit(action="patient_token")[0].target == "p2"
    assert token not in client.get("/patients/p2").get_data(as_text=True)  # listed by id only


def test_api_create_list_revoke(client: FlaskClient, store) -> None:
    # Prepare
    login(client)
    headers = {"X-CSRF-Token": csrf_of(client)}
    # Execute
    created = client.post("/api/patients/p1/tokens", json={"days": 0}, headers=headers).get_json()
    listed = client.get("/api/patients/p1/tokens").get_json()["tokens"]
    revoked = client.post(f"/api/patients/p1/tokens/{created['id']}/revoke", headers=headers)
    bearer = client.get("/api/patients/p1", headers={"Authorization": f"Bearer {created['token']}"})
    # Assert
    assert created["expires_at"] is None and created["valid"] is True and len(created["id"]) == 12
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert revoked.status_code == 200 and bearer.status_code == 401


@pytest.mark.parametrize(("body", "message"), [({"days": "-1"}, "between"), ({"days": "soon"}, "number"),
                                               ({"label": "x" * 101}, "longer")])  # fmt: skip
def test_bad_token_input(client: FlaskClient, body: dict, message: str) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.post(
        "/api/patients/p1/tokens", json=body, headers={"X-CSRF-Token": csrf_of(client)}
    )
    # Assert
    assert resp.status_code == 400 and message in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("token_id", ["abc", "0" * 12])
def test_revoking_unknown_code_is_404(client: FlaskClient, token_id: str) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.post(
        f"/api/patients/p1/tokens/{token_id}/revoke", headers={"X-CSRF-Token": csrf_of(client)}
    )
    # Assert
    assert resp.status_code == 404


def test_patients_cannot_manage_codes(client: FlaskClient, patient_token: str) -> None:
    # Prepare
    login_patient(client, patient_token)
    # Execute
    listed = client.get("/api/patients/p1/tokens")
    created = client.post(
        "/api/patients/p1/tokens", json={}, headers={"X-CSRF-Token": csrf_of(client)}
    )
    page = client.get("/patients/p1")
    # Assert
    assert listed.status_code == created.status_code == 403
    assert b"access-codes" not in page.data
