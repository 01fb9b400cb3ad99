"""The patient's own view: plain words, no probabilities or model hashes; simulated data says
so; short access codes with a QR code; a patient link the demo can print."""

from __future__ import annotations

import json
import re

import pytest
from flask.testing import FlaskClient

from common.payloads import Status
from store.base import Store
from tests.web.conftest import T0_NS, beat, csrf_of, event, login, login_patient
from web.beat_burden import beat_burden
from web.patient_view import rhythm_verdict

SECOND = 10**9


def _beats(labels: str, t0: int = T0_NS, rr_s: float = 0.8) -> list:
    return [beat(t0 + round(i * rr_s * SECOND), lab, rr_s=rr_s) for i, lab in enumerate(labels)]


@pytest.mark.parametrize(
    ("labels", "rhythm", "code", "words"),
    [
        ("", None, "waiting", "waiting for your device"),
        ("N" * 20, None, "regular", "regular rhythm"),
        ("N" * 18 + "VN", None, "regular", "regular rhythm"),
        ("NVNVNNSNNVNNNN", None, "extra_beats", "extra beats"),
        ("QQQQQNQQNQ", None, "noisy", "signal too noisy"),
        ("N" * 20, {"label": "AF", "active": True}, "af",
         "possible atrial fibrillation — your care team has been told"),
        ("N" * 20, {"label": "AF", "active": False}, "regular", "regular rhythm"),
        ("N" * 20, {"label": "Tachycardia", "active": True}, "fast", "fast heart rate"),
        ("N" * 20, {"label": "Bradycardia", "active": True}, "slow", "slow heart rate"),
        ("N" * 20, {"label": "VT run", "active": True}, "vt", "your care team has been told"),
    ],
)  # fmt: skip
def test_rhythm_verdict_in_plain_words(labels: str, rhythm: dict | None, code: str,
                                       words: str) -> None:  # fmt: skip
    # Execute
    got_code, text = rhythm_verdict(list(labels), rhythm)
    # Assert
    assert got_code == code and words in text


def test_patient_view_api_has_plain_words_and_no_model_details(
    client: FlaskClient, hub, store: Store, patient_token: str
) -> None:
    # Prepare: 30 beats, 3 of them ventricular, stored and live
    beats = _beats("NNNNNNNNNV" * 3)
    store.insert_predictions(beats)
    hub.on_predictions("p1", beats, [])
    hub.on_status(Status("p1", True, T0_NS, "sha256:0123456789abcdef", 77.0))
    login_patient(client, patient_token)
    # Execute
    view = client.get("/api/patients/p1/view").get_json()
    # Assert
    assert view["heart_rate_bpm"] == pytest.approx(75.0)
    assert view["rhythm"] == {"code": "extra_beats", "text": view["rhythm"]["text"]}
    assert view["flagged_for_care_team"] == 3
    assert view["simulated"] is False and view["device_online"] is True
    text = json.dumps(view)
    assert "probs" not in text and "sha256" not in text and "model" not in text


def test_af_episode_is_told_in_plain_words(client: FlaskClient, hub, patient_token: str) -> None:
    # Prepare
    hub.on_predictions("p1", _beats("N" * 5), [event(T0_NS, "af_episode")])  # ongoing
    login_patient(client, patient_token)
    # Execute
    view = client.get("/api/patients/p1/view").get_json()
    # Assert
    assert view["rhythm"]["text"] == "possible atrial fibrillation — your care team has been told"


def test_patient_page_is_the_plain_view_and_clinician_page_keeps_details(
    app, client: FlaskClient, patient_token: str
) -> None:
    # Prepare
    login_patient(client, patient_token)
    clinician = app.test_client()
    login(clinician)
    # Execute
    mine = client.get("/patients/p1").get_data(as_text=True)
    detailed = clinician.get("/patients/p1").get_data(as_text=True)
    # Assert
    assert 'id="my-heart"' in mine and 'id="verdict"' in mine and 'id="flagged-count"' in mine
    assert "beat-prob" not in mine and "live.js" not in mine
    assert (
        'id="beat-prob"' in detailed and "live.js" in detailed and 'id="my-heart"' not in detailed
    )


def test_beat_burden_shares_of_classified_beats_in_report_order() -> None:
    # Execute
    burden = beat_burden({"V": 30, "N": 960, "Z": 2, "S": 8, "F": 0, "Q": 500, "X": -1})
    # Assert: AAMI order, unknown labels after, empty ones left out, Q counted apart
    assert (burden["classified"], burden["unreadable"]) == (1000, 500)
    assert [(c["label"], c["count"], c["share"]) for c in burden["classes"]] == [
        ("N", 960, "96.0 %"), ("S", 8, "0.8 %"), ("V", 30, "3.0 %"), ("Z", 2, "0.2 %")
    ]  # fmt: skip


def test_beat_burden_says_a_tiny_share_is_not_none_and_survives_no_beats() -> None:
    # Execute
    tiny = beat_burden({"N": 100_000, "V": 5})
    only_noise = beat_burden({"Q": 7})
    # Assert
    assert [c["share"] for c in tiny["classes"]] == ["100.0 %", "<0.1 %"]
    assert only_noise == {"classified": 0, "unreadable": 7, "classes": []}
    assert beat_burden({}) == {"classified": 0, "unreadable": 0, "classes": []}


def _burden_rows(page: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<tr data-label="(\w)"><td>\w</td><td>(\d+)</td><td>([^<]+)</td>', page)


def test_clinician_page_counts_exactly_the_last_24_h_of_data(app, store: Store) -> None:
    # Prepare: the latest beat at T; one V exactly at T - 24 h (counted), one S 1 ns before
    # it (not counted), 10 beats ending at T (2 V, 1 S, 1 Q)
    day = 24 * 3600 * SECOND
    recent = _beats("NNNVNNSNVQ", t0=T0_NS + day)
    latest = recent[-1].t_ns
    store.insert_predictions([beat(latest - day - 1, "S"), beat(latest - day, "V"), *recent])
    clinician = app.test_client()
    login(clinician)
    # Execute
    page = clinician.get("/patients/p1").get_data(as_text=True)
    # Assert: shares of the 10 classified beats; Q apart
    assert _burden_rows(page) == [("N", "6", "60.0 %"), ("S", "1", "10.0 %"), ("V", "3", "30.0 %")]
    assert "<td>classified</td><td>10</td>" in page and "<td>unreadable (Q)</td><td>1</td>" in page
    assert f'data-t-s="{latest / 1e9}"' in page and f'data-t-s="{(latest - day) / 1e9}"' in page


def test_patient_sees_no_burden_and_flags_only_the_last_24_h(
    client: FlaskClient, store: Store, patient_token: str
) -> None:
    # Prepare: a V two days before the latest beats (outside the day), then 2 V in the day
    day = 24 * 3600 * SECOND
    store.insert_predictions([beat(T0_NS, "V")] + _beats("NNVNNVNN", t0=T0_NS + 2 * day))
    login_patient(client, patient_token)
    # Execute
    page = client.get("/patients/p1").get_data(as_text=True)
    view = client.get("/api/patients/p1/view").get_json()
    # Assert
    assert 'id="burden"' not in page and "data-label" not in page
    assert view["flagged_for_care_team"] == 2


def test_clinician_page_without_stored_beats_says_so(app) -> None:
    # Prepare
    clinician = app.test_client()
    login(clinician)
    # Execute
    page = clinician.get("/patients/p1").get_data(as_text=True)
    # Assert
    assert 'id="burden"' in page and "No stored beats yet." in page


def test_simulated_patient_says_so_on_every_page_and_in_the_api(
    app, client: FlaskClient, hub, store: Store, patient_token: str
) -> None:
    # Prepare: p1 replays simulated data (the device says so in its status detail)
    hub.on_status(Status("p1", True, T0_NS, "v1", None, '{"simulated":true,"beats":3}'))
    login(client)
    patient = app.test_client()
    login_patient(patient, patient_token)
    # Execute
    pages = [
        client.get("/patients/p1"),
        client.get("/labels?client_id=p1"),
        patient.get("/patients/p1"),
    ]
    api = client.get("/api/patients/p1").get_json()
    rows = {r["client_id"]: r for r in client.get("/api/patients").get_json()["patients"]}
    other = client.get("/patients/p2").get_data(as_text=True)
    # Assert
    for page in pages:
        assert page.status_code == 200
        assert 'id="simulated-banner"' in page.get_data(as_text=True)
    assert api["simulated"] is True and rows["p1"]["simulated"] is True
    assert rows["p2"]["simulated"] is False and 'id="simulated-banner"' not in other
    assert patient.get("/api/patients/p1/view").get_json()["simulated"] is True


def test_client_record_marked_simulated_is_simulated(client: FlaskClient, store: Store) -> None:
    # Prepare
    store.register_client("p2", task="beat", dataset="simulated")
    login(client)
    # Execute / Assert
    assert client.get("/api/patients/p2").get_json()["simulated"] is True


def test_access_code_is_short_typeable_and_shown_with_a_qr_code(app, client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    page = client.post("/patients/p2/tokens", data={"days": "30", "csrf_token": csrf_of(client)})
    html = page.get_data(as_text=True)
    code = re.search(r'id="new-token">([^<]+)<', html).group(1)
    typed = app.test_client()
    login_patient(typed, code.replace("-", "").lower())  # typed without dashes, lower case
    # Assert
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", code), code
    assert re.search(r'<img[^>]+id="access-qr"[^>]+src="data:image/svg\+xml', html)
    assert "/patient/login#code=" + code in html
    assert typed.get("/patients/p2").status_code == 200


def test_legacy_long_codes_still_work(app, store: Store) -> None:
    # Prepare: a code minted before short codes (43 url-safe characters)
    import hashlib
    import secrets

    legacy = secrets.token_urlsafe(32)
    store.create_patient_token(hashlib.sha256(legacy.encode()).hexdigest(), "p1", expires_at=None)
    client = app.test_client()
    # Execute
    login_patient(client, legacy)
    # Assert
    assert (
        client.get("/api/patients/p1", headers={"Authorization": f"Bearer {legacy}"}).status_code
        == 200
    )


def test_patient_link_for_the_demo(app, store: Store) -> None:
    # Prepare
    from web.patient_link import mint_patient_link

    store.register_client("sim-patient-1", credentials_hash="h", task="beat", dataset="")
    # Execute
    link = mint_patient_link(store, "sim-patient-1", "http://127.0.0.1:8080/", simulated=True)
    client = app.test_client()
    login_patient(client, link.code)
    # Assert
    assert link.url == f"http://127.0.0.1:8080/patient/login#code={link.code}"
    assert client.get("/patients/sim-patient-1").status_code == 200
    rec = store.get_client("sim-patient-1")
    assert rec is not None and rec.dataset == "simulated" and rec.credentials_hash == "h"
    assert rec.task == "beat"
    qr = link.qr_terminal()
    assert len(qr.splitlines()) > 10 and ("█" in qr or "▀" in qr)
