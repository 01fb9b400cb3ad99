"""Federation view: rounds, metrics, models with cards, clients, training controls."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from store.records import DesiredTraining
from tests.web.conftest import csrf_of, login

CARD = {"task": "beat", "classes": ["N", "S", "V", "F", "Q"], "input": {"fs_hz": 360}}


@pytest.fixture()
def history(store) -> None:
    """Two closed rounds with metrics and models, one open round."""
    base = store.put_model(b"seed", format="onnx-int8-qdq", card=CARD, metrics={"macro_f1": 0.61})
    for i, f1 in enumerate((0.64, 0.70)):
        r = store.open_round(task="beat", strategy="fedavg", base_version=base.version, quorum=2,
                             deadline=time.time() + 60, selected_clients=("p1", "p2"))  # fmt: skip
        for cid in ("p1", "p2"):
            store.record_update(round_id=r.round_id, client_id=cid, update_id=f"{r.round_id}-{cid}",
                                blob=b"u", n_samples=100)  # fmt: skip
        store.claim_round(r.round_id, "w", lease_s=30)
        base = store.finalize_round(r.round_id, "w", model_blob=f"m{i}".encode(), model_format="onnx-int8-qdq",
                                    model_card=CARD, round_metrics={"macro_f1": f1, "loss": 1.0 - f1})  # fmt: skip
    store.open_round(task="beat", strategy="fedprox", base_version=base.version, quorum=3,
                     deadline=time.time() + 60)  # fmt: skip


@pytest.mark.usefixtures("history")
def test_overview_has_rounds_models_clients(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    data = client.get("/api/federation").get_json()
    page = client.get("/federation")
    # Assert
    rounds = data["rounds"]
    assert [(r["state"], r["participants"], r["selected"], r["quorum"]) for r in rounds] == [
        ("open", 0, 0, 3), ("closed", 2, 2, 2), ("closed", 2, 2, 2)]  # fmt: skip
    assert rounds[1]["metrics"]["macro_f1"] == pytest.approx(0.70) and rounds[1]["duration_s"] >= 0
    assert [m["version"] for m in data["models"]] == [3, 2, 1]
    assert data["models"][0]["card"]["classes"] == CARD["classes"]
    assert [c["client_id"] for c in data["clients"]] == ["p1", "p2"]
    assert page.status_code == 200 and b"fedprox" in page.data and b'"classes": ' in page.data


@pytest.mark.usefixtures("history")
def test_metric_series_per_round(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert
    assert m["rounds"] == [1, 2, 3]
    assert (
        m["series"]["macro_f1"][:2] == pytest.approx([0.64, 0.70])
        and m["series"]["macro_f1"][2] is None
    )


@pytest.mark.usefixtures("history")
def test_model_card_endpoint_and_404(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    ok = client.get("/api/federation/models/1")
    missing = client.get("/api/federation/models/99")
    # Assert
    assert ok.get_json()["card"] == CARD and ok.get_json()["metrics"] == {"macro_f1": 0.61}
    assert missing.status_code == 404 and "not found" in missing.get_json()["error"]["message"]


def test_start_stop_via_form_writes_control_state_and_audit(client: FlaskClient, store) -> None:
    # Prepare
    login(client, "root")
    form = {"task": "beat", "strategy": "fedprox", "rounds": "20", "dataset": "mitdb", "mode": "head",
            "min_quorum": "3", "deadline_s": "90", "local_epochs": "2", "lr": "0.05", "csrf_token": csrf_of(client)}  # fmt: skip
    # Execute
    started = client.post("/federation/control", data=form | {"action": "start"})
    after_start = store.get_training_control()
    stopped = client.post("/federation/control", data=form | {"action": "stop"})
    # Assert
    assert started.status_code == stopped.status_code == 302
    assert after_start.desired is DesiredTraining.RUNNING and after_start.generation == 1
    assert (after_start.task, after_start.strategy, after_start.rounds, after_start.dataset) == (
        "beat",
        "fedprox",
        20,
        "mitdb",
    )
    assert after_start.config == {
        "min_quorum": 3,
        "deadline_s": 90.0,
        "local_epochs": 2,
        "lr": 0.05,
        "mode": "head",
    }
    assert after_start.updated_by == "root"
    ctl = store.get_training_control()
    assert ctl.desired is DesiredTraining.STOPPED and ctl.generation == 2
    assert [e.action for e in store.list_audit(actor="root")][:2] == [
        "training_stop",
        "training_start",
    ]
    assert b"generation 2" in client.get("/federation").data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "chess"}, "task"),
        ({"strategy": "magic"}, "strategy"),
        ({"rounds": "0"}, "between"),
        ({"rounds": "many"}, "whole number"),
        ({"action": "explode"}, "action"),
        ({"min_quorum": "-1"}, "min_quorum"),
        ({"fraction": "1.5"}, "fraction"),
        ({"compression": "zip"}, "compression"),
        ({"lr": "nan"}, "lr"),
        ({"dataset": "../../etc"}, None),
        ({"dataset": "a b"}, "dataset"),
        ({"config_json": "{oops"}, "not valid JSON"),
        ({"config_json": "[1, 2]"}, "JSON object"),
        ({"mode": "turbo"}, "mode"),
    ],
)
def test_bad_control_input_changes_nothing(
    client: FlaskClient, store, change: dict, message: str | None
) -> None:
    # Prepare
    login(client, "root")
    body = {"action": "start", "task": "beat", "strategy": "fedavg", "rounds": "5"} | change
    # Execute
    resp = client.post(
        "/api/federation/control", data=body, headers={"X-CSRF-Token": csrf_of(client)}
    )
    # Assert
    if message is None:  # slashes and dots are allowed in dataset names; it is only a label
        assert resp.status_code == 200
        return
    assert resp.status_code == 400, resp.data
    assert message in resp.get_json()["error"]["message"]
    assert store.get_training_control().generation == 0


def test_advanced_config_json_merges(client: FlaskClient, store) -> None:
    # Prepare
    login(client, "root")
    body = {"action": "save", "task": "ptb", "strategy": "fedadam", "rounds": 3,
            "config_json": '{"strategy_params": {"eta": 0.01}}', "min_clients": 2, "compression": "none"}  # fmt: skip
    # Execute
    resp = client.post(
        "/api/federation/control", json=body, headers={"X-CSRF-Token": csrf_of(client)}
    )
    # Assert
    assert resp.status_code == 200
    ctl = store.get_training_control()
    assert ctl.config == {"strategy_params": {"eta": 0.01}, "min_clients": 2, "compression": "none"}
    assert ctl.desired is DesiredTraining.STOPPED


def test_client_assignment_keeps_credentials(client: FlaskClient, store) -> None:
    # Prepare
    store.register_client("p1", credentials_hash="h1", task="beat", dataset="mitdb")
    login(client, "root")
    # Execute
    resp = client.post("/federation/clients/p1", data={"task": "ptb", "dataset": "ptbdb",
                                                        "csrf_token": csrf_of(client)})  # fmt: skip
    missing = client.post("/api/federation/clients/ghost", json={"task": "ptb"},
                          headers={"X-CSRF-Token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 302
    c = store.get_client("p1")
    assert (c.task, c.dataset, c.credentials_hash) == ("ptb", "ptbdb", "h1")
    assert store.list_audit(action="client_assignment")[0].target == "p1"
    assert missing.status_code == 404


def test_clinician_sees_controls_read_only(client: FlaskClient) -> None:
    # Prepare
    login(client, "alice")
    # Execute
    html = client.get("/federation").data
    # Assert
    assert b"needs the admin role" in html and b"Start training" not in html
