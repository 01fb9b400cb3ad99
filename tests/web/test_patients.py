"""Patient pages and API: list, summary, live snapshot, stored predictions/events, errors."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from common.payloads import Status
from tests.web.conftest import T0_NS, beat, ecg_chunk, event, login


def test_patient_list_shows_store_and_live_patients(client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    hub.on_live("live-only", ecg_chunk(0))
    # Execute
    rows = client.get("/api/patients").get_json()["patients"]
    page = client.get("/patients")
    # Assert
    assert [r["client_id"] for r in rows] == ["live-only", "p1", "p2"]
    assert b"live-only" in page.data and b"p2" in page.data


def test_summary_has_latest_beat_heart_rate_rhythm_and_status(client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    hub.on_status(Status("p1", True, T0_NS, "v7", 80.0))
    hub.on_predictions("p1", [beat(T0_NS + i * 750_000_000, rr_s=0.75) for i in range(5)], [])
    hub.on_predictions("p1", [beat(T0_NS + 5 * 750_000_000, "V", rr_s=0.75)],
                       [event(T0_NS, "af_episode")])  # fmt: skip
    # Execute
    s = client.get("/api/patients/p1").get_json()
    # Assert
    assert s["latest_beat"]["label"] == "V"
    assert s["heart_rate_bpm"] == pytest.approx(80.0)
    assert s["rhythm"]["label"] == "AF" and s["rhythm"]["active"] is True
    assert s["status"]["online"] is True and s["status"]["battery_pct"] == 80.0
    assert s["client"]["task"] == "beat"


def test_rhythm_event_ends(client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    hub.on_predictions("p1", [beat(T0_NS)], [event(T0_NS, "af_episode")])
    # Execute
    hub.on_predictions("p1", [beat(T0_NS + 60 * 10**9)], [])
    # Assert
    rhythm = client.get("/api/patients/p1").get_json()["rhythm"]
    assert rhythm["label"] == "AF" and rhythm["active"] is False


def test_summary_falls_back_to_stored_predictions(client: FlaskClient, store) -> None:
    # Prepare
    login(client)
    store.insert_predictions([beat(T0_NS, "S")])
    # Execute
    s = client.get("/api/patients/p1").get_json()
    # Assert
    assert s["latest_beat"]["label"] == "S"


def test_live_snapshot_holds_the_ring(client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    for k in range(4):
        hub.on_live("p1", ecg_chunk(25 * k))
    # Execute
    snap = client.get("/api/patients/p1/live").get_json()
    # Assert
    ecg = snap["streams"]["ecg"]
    assert ecg["fs"] == 125.0 and len(ecg["t"]) == 100 and len(ecg["data"][0]) == 100
    assert ecg["t"][0] == pytest.approx(T0_NS / 1e9)


def test_stored_predictions_and_events_with_filters(client: FlaskClient, store) -> None:
    # Prepare
    login(client)
    store.insert_predictions([beat(T0_NS + i * 1_000_000_000) for i in range(10)])
    store.insert_events([event(T0_NS), event(T0_NS + 5_000_000_000, "tachycardia")])
    # Execute
    preds = client.get(f"/api/patients/p1/predictions?since_ns={T0_NS + 2_000_000_000}&limit=3")
    events = client.get("/api/patients/p1/events").get_json()["events"]
    # Assert
    assert [p["t_ns"] for p in preds.get_json()["predictions"]] == [
        T0_NS + i * 1_000_000_000 for i in (2, 3, 4)
    ]
    assert [e["kind"] for e in events] == ["tachycardia", "vt_run"]


@pytest.mark.parametrize("query", ["since_ns=abc", "limit=1.5", "until_ns=1e9"])
def test_malformed_query_is_400_json(client: FlaskClient, query: str) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.get(f"/api/patients/p1/predictions?{query}")
    # Assert
    assert resp.status_code == 400 and "whole numbers" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("cid", ["ghost", "bad id!", "x" * 80])
def test_unknown_patient_is_404_page_and_json(client: FlaskClient, cid: str) -> None:
    # Prepare
    login(client)
    # Execute
    page = client.get(f"/patients/{cid}")
    api = client.get(f"/api/patients/{cid}")
    # Assert
    assert page.status_code == 404 and b"Unknown patient" in page.data and b"<html" in page.data
    assert api.status_code == 404 and "Unknown patient" in api.get_json()["error"]["message"]


def test_patient_page_references_local_uplot_only(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    html = client.get("/patients/p1").data.decode()
    with client.get("/static/vendor/uplot/uPlot.iife.min.js") as js:
        status, body = js.status_code, js.data
    # Assert
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert "/static/vendor/uplot/uPlot.iife.min.js" in refs
    assert all(r.startswith("/") for r in refs), refs
    assert status == 200 and b"uPlot" in body


def test_oversized_upload_is_413(client: FlaskClient) -> None:
    # Prepare
    login(client)
    big = "x" * (65 * 1024)
    # Execute
    api = client.post("/api/labels", data={"note": big}, headers={"X-CSRF-Token": "x"})
    page = client.post("/labels", data={"note": big}, headers={"Accept": "text/html"})
    # Assert
    assert api.status_code == 413 and "too large" in api.get_json()["error"]["message"]
    assert page.status_code == 413 and b"too large" in page.data


def test_unknown_route_is_404_page(client: FlaskClient) -> None:
    # Execute
    resp = client.get("/no/such/page")
    # Assert
    assert resp.status_code == 404 and b"Error 404" in resp.data


def test_healthz_reports_broker(client: FlaskClient, feed) -> None:
    # Prepare
    feed.up = False
    # Execute
    body = client.get("/healthz").get_json()
    # Assert
    assert body == {"ok": True, "broker_connected": False}
