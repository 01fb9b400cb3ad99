"""Federation view: rounds, metrics, models with cards, clients, training controls."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from store.records import DesiredTraining
from tests.web.conftest import csrf_of, login
from web.metric_names import describe, format_value

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


# -- model quality per round (issue 17 item 5, issue 19: raw key names, flat lines) ----------------
PLUMBING = {"aggregate_s": 0.12, "round_s": 3.4, "quorum": 2.0, "selected": 3.0, "failures": 1.0,
            "rejected": 0.0, "excluded": 0.0, "received": 2.0, "uplink_bytes_mean": 17_920.0,
            "weights_capped": 0.0, "norms_clipped": 1.0}  # fmt: skip
VALIDATION = {"macro_f1": 0.7123, "accuracy": 0.91, "kappa": 0.55, "se_N": 0.95, "ppv_N": 0.97,
              "se_S": 0.41, "ppv_S": 0.38, "se_V": 0.88, "ppv_V": 0.905}  # fmt: skip
DEVICES = {"device_n": 1200.0, "device_macro_f1": 0.58, "device_se_V": 0.8, "device_ppv_V": 0.85,
           "device_f1_V": 0.824, "device_se_S": 0.3, "device_ppv_S": 0.25, "device_f1_S": 0.27}  # fmt: skip
REASON = "release gate: macro_f1 0.790 is 0.056 below the current model's 0.846"
ENGINE_CARD = {"federated": {"round_no": 1, "run": 1}}  # what the round engine stores per round


def close_round(store, base: int, metrics: dict[str, float], card: dict | None = None,
                task: str = "beat") -> int:  # fmt: skip
    """One round closed as the round engine closes it; returns the new model version."""
    r = store.open_round(task=task, strategy="fedavg", base_version=base, quorum=2,
                         deadline=time.time() + 60, selected_clients=("p1", "p2", "p3"))  # fmt: skip
    for cid in ("p1", "p2"):
        store.record_update(round_id=r.round_id, client_id=cid, update_id=f"{r.round_id}-{cid}",
                            blob=b"u", n_samples=100)  # fmt: skip
    store.claim_round(r.round_id, "w", lease_s=30)
    mv = store.finalize_round(r.round_id, "w", model_blob=f"m{r.round_id}".encode(),
                              model_format="release", model_card=card or ENGINE_CARD,
                              round_metrics=metrics)  # fmt: skip
    return int(mv.version)


def fail_round(store, base: int, reason: str, task: str = "beat") -> None:
    """A round the release gate refused (no metrics stored, a reason)."""
    r = store.open_round(task=task, strategy="fedavg", base_version=base, quorum=2,
                         deadline=time.time() + 60, selected_clients=("p1", "p2"))  # fmt: skip
    store.claim_round(r.round_id, "w", lease_s=30)
    assert store.fail_round(r.round_id, reason, worker="w")


@pytest.fixture()
def engine_rounds(store) -> None:
    """Beat rounds as the engine writes them: 1 validated + devices, 2 refused, 3 devices only, 4 open."""
    seed = store.put_model(b"seed", format="release", card=CARD).version
    v = close_round(store, seed, VALIDATION | DEVICES | PLUMBING | {"val_loss": 0.31})
    fail_round(store, v, REASON)
    v = close_round(store, v, DEVICES | PLUMBING | {"device_macro_f1": 0.61})
    store.open_round(task="beat", strategy="fedavg", base_version=v, quorum=2,
                     deadline=time.time() + 60)  # fmt: skip


def series_labels(chart: dict) -> list[str]:
    return [s["label"] for s in chart["series"]]


@pytest.mark.usefixtures("engine_rounds")
def test_quality_charts_come_first_with_human_labels(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert: macro-F1 first, server and devices side by side; then VEB and SVEB Se/+P
    charts = m["charts"]
    first, veb, sveb = charts[:3]
    assert (first["id"], first["title"], first["unit"], first["scale"]) == (
        "macro_f1", "Macro-F1 per round", "%", 100.0)  # fmt: skip
    assert series_labels(first) == [
        "validation set (server)", "devices' own beats (before training)"]  # fmt: skip
    assert [s["dashed"] for s in first["series"]] == [False, True]
    assert veb["title"] == "VEB Se and +P (class V)" and sveb["title"] == "SVEB Se and +P (class S)"
    assert series_labels(veb) == [
        "Se, validation set (server)", "+P, validation set (server)",
        "Se, devices' own beats (before training)", "+P, devices' own beats (before training)"]  # fmt: skip
    groups = [c["group"] for c in charts]
    assert groups == sorted(groups, key=["quality", "quality_detail", "plumbing", "other"].index)
    assert groups.count("quality") == 3
    # a round without a metric is a gap: the refused round 2 and the open round 4 have none
    assert m["rounds"] == [1, 2, 3, 4]
    assert m["series"]["macro_f1"] == [pytest.approx(0.7123), None, None, None]
    assert m["series"]["device_macro_f1"] == [pytest.approx(0.58), None, pytest.approx(0.61), None]


@pytest.mark.usefixtures("engine_rounds")
def test_plumbing_below_with_human_names_and_units(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert
    plumbing = {c["id"]: c for c in m["charts"] if c["group"] == "plumbing"}
    assert list(plumbing) == ["plumbing-participation", "plumbing-time", "plumbing-traffic",
                              "plumbing-robustness"]  # fmt: skip
    assert series_labels(plumbing["plumbing-time"]) == ["Round duration", "Aggregation"]
    assert plumbing["plumbing-time"]["unit"] == "s"
    traffic = plumbing["plumbing-traffic"]
    assert (traffic["unit"], traffic["scale"], series_labels(traffic)) == (
        "KiB", 1 / 1024, ["Upload per device (mean)"])  # fmt: skip
    assert "Quorum (updates needed)" in series_labels(plumbing["plumbing-participation"])
    assert m["names"]["aggregate_s"] == {"label": "Aggregation", "source": "", "unit": "s",
                                         "scale": 1.0, "decimals": 2, "group": "plumbing"}  # fmt: skip
    # a key without a human name is kept, under "other", by its raw name
    [other] = [c for c in m["charts"] if c["group"] == "other"]
    assert (other["title"], series_labels(other)) == ("val_loss", ["val_loss"])
    assert m["names"]["val_loss"]["group"] == "other"


@pytest.mark.usefixtures("engine_rounds")
def test_page_shows_quality_then_rounds_then_plumbing(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    html = client.get("/federation").get_data(as_text=True)
    # Assert: section order, latest values in % with one decimal, the refusal reason in the table
    order = [html.index(f'id="{i}"') for i in ("quality", "rounds", "plumbing", "controls")]
    assert order == sorted(order)
    latest = html[html.index('id="quality-latest"') : html.index('id="rounds"')]
    assert "Macro-F1" in latest and "71.2 %" in latest and "61.0 %" in latest
    assert "VEB Se" in latest and "88.0 %" in latest and "SVEB +P" in latest
    assert (
        "validation set (server)" in latest and "devices&#39; own beats (before training)" in latest
    )
    table = html[html.index('id="rounds"') : html.index('id="plumbing"')]
    assert REASON.replace("'", "&#39;") in table
    assert "aggregate_s" not in html and "uplink_bytes_mean" not in html


def test_classes_from_the_keys_when_no_card_names_them(client: FlaskClient, store) -> None:
    # Prepare: the engine's own cards name no classes; the keys still do (V only here)
    seed = store.put_model(b"seed", format="release", card={}).version
    close_round(store, seed, {"se_V": 0.9, "ppv_V": 0.8, "macro_f1": 0.5, "se_X1": 0.2})
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert
    assert m["classes"] == {"beat": ["V", "X1"]}
    titles = [c["title"] for c in m["charts"] if c["group"] == "quality"]
    assert titles == ["Macro-F1 per round", "VEB Se and +P (class V)"]
    detail = [c["title"] for c in m["charts"] if c["group"] == "quality_detail"]
    assert "X1 Se" in detail  # only the measures it has


def test_rhythm_rounds_show_af_f1_with_class_names_from_the_card(
    client: FlaskClient, store
) -> None:
    # Prepare
    card = {"task": "rhythm", "classes": ["N", "AF", "O", "noisy"]}
    seed = store.put_model(b"seed", format="release", card=card).version
    close_round(store, seed, {"macro_f1": 0.7, "se_AF": 0.8, "ppv_AF": 0.7, "f1_AF": 0.7467,
                              "se_noisy": 0.5, "device_f1_AF": 0.6, "device_macro_f1": 0.55},
                task="rhythm")  # fmt: skip
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert
    assert m["classes"] == {"rhythm": ["N", "AF", "O", "noisy"]}
    quality = [c for c in m["charts"] if c["group"] == "quality"]
    assert [c["title"] for c in quality] == ["Macro-F1 per round", "AF F1"]
    assert series_labels(quality[0])[1] == "devices' own recordings (before training)"
    assert series_labels(quality[1]) == [
        "F1, validation set (server)", "F1, devices' own recordings (before training)"]  # fmt: skip
    assert m["series"]["f1_AF"] == [pytest.approx(0.7467)]
    assert not any("VEB" in c["title"] for c in m["charts"])


@pytest.mark.parametrize(
    ("key", "task", "value", "label", "shown"),
    [
        ("macro_f1", "beat", 0.71249, "Macro-F1, validation set (server)", "71.2 %"),
        (
            "device_macro_f1",
            "beat",
            0.5,
            "Macro-F1, devices' own beats (before training)",
            "50.0 %",
        ),
        ("device_ppv_S", "beat", 0.25, "SVEB +P, devices' own beats (before training)", "25.0 %"),
        ("se_AF", "rhythm", 0.9, "AF Se, validation set (server)", "90.0 %"),
        ("kappa", "beat", 0.5512, "Cohen's κ, validation set (server)", "0.551"),
        ("uplink_bytes_mean", "beat", 17_920.0, "Upload per device (mean)", "17.5 KiB"),
        ("round_s", "beat", 3.44, "Round duration", "3.4 s"),
        ("device_n", "beat", 1200.0, "Labelled examples scored on the devices", "1200"),
        ("val_loss", "beat", 0.3125, "val_loss", "0.312"),
        ("macro_f1", "beat", float("nan"), "Macro-F1, validation set (server)", "–"),
        ("source", "beat", "models/beat.onnx", "source", "models/beat.onnx"),
    ],
)
def test_metric_names_and_units(key: str, task: str, value: object, label: str, shown: str) -> None:
    # Execute
    name = describe(key, task)
    # Assert
    assert (name.full_label, format_value(name, value)) == (label, shown)


def test_nan_metric_is_a_gap_and_model_metrics_have_names(client: FlaskClient, store) -> None:
    # Prepare: round 1's macro-F1 overwritten with NaN (stored as missing), round 2 has one
    seed = store.put_model(b"seed", format="release", card=CARD, metrics={"macro_f1": 0.61}).version
    v = close_round(store, seed, {"macro_f1": 0.65, "round_s": 2.0})
    close_round(store, v, {"macro_f1": 0.7, "round_s": 2.0})
    store.record_metrics(1, {"macro_f1": float("nan")})
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    html = client.get("/federation").get_data(as_text=True)
    # Assert
    assert m["series"]["macro_f1"] == [None, pytest.approx(0.7)]
    assert "Macro-F1, validation set (server): 61.0 %" in html  # the seed model's metrics


def test_beat_and_rhythm_rounds_in_one_window(client: FlaskClient, store) -> None:
    # Prepare: beat rounds, then a rhythm run (its own seed model and card)
    beat = store.put_model(b"beat", format="release", card=CARD).version
    close_round(store, beat, {"macro_f1": 0.6, "se_V": 0.9, "ppv_V": 0.8, "se_N": 0.99})
    rhythm = store.put_model(b"rhythm", format="release",
                             card={"task": "rhythm", "classes": ["N", "AF", "O"]}).version  # fmt: skip
    close_round(store, rhythm, {"macro_f1": 0.7, "device_f1_AF": 0.5}, task="rhythm")
    login(client)
    # Execute
    m = client.get("/api/federation/metrics").get_json()
    # Assert
    assert m["tasks"] == ["beat", "rhythm"]
    assert m["classes"] == {"rhythm": ["N", "AF", "O"], "beat": ["N", "S", "V", "F", "Q"]}
    quality = [c["title"] for c in m["charts"] if c["group"] == "quality"]
    assert quality == [
        "Macro-F1 per round",
        "AF F1, rhythm task",
        "VEB Se and +P (class V), beat task",
    ]
    detail_ids = [c["id"] for c in m["charts"] if c["group"] == "quality_detail"]
    assert len(detail_ids) == len(set(detail_ids))
    assert sum(1 for c in m["charts"] for s in c["series"] if s["key"] == "se_N") == 1
