"""Label review: flagged items with snippets; labels stored, delivered, re-delivered."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from store.records import LabelState
from tests.web.conftest import T0_NS, beat, csrf_of, ecg_chunk, event, login
from web.delivery import redeliver

V_T = T0_NS + 1_000_000_000  # a V beat 1 s into the stream


def _stream_with_flagged_beat(hub) -> None:
    hub.on_predictions("p1", [beat(V_T, "V")], [])
    for k in range(0, 500, 25):  # 4 s of ECG at 125 Hz covers the snippet window
        hub.on_live("p1", ecg_chunk(k))


def test_review_lists_flagged_beat_with_snippet(client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    _stream_with_flagged_beat(hub)
    # Execute
    items = client.get("/api/labels/review").get_json()["items"]
    page = client.get("/labels?client_id=p1")
    # Assert
    assert [(i["target"], i["t_ns"], i["label"]) for i in items] == [("beat", V_T, "V")]
    snip = items[0]["snippet"]
    assert snip["fs"] == 125.0 and len(snip["t"]) == len(snip["v"]) == 175  # 0.6 s + 0.8 s
    assert snip["t"][0] == pytest.approx(-0.6) and items[0]["clinician_label"] is None
    assert b'class="snippet"' in page.data and b"Save label" in page.data


def test_stored_events_and_abnormal_beats_are_reviewable_without_live_feed(
    client: FlaskClient, store
) -> None:
    # Prepare
    login(client)
    store.insert_predictions([beat(T0_NS, "N"), beat(T0_NS + 10**9, "S")])
    store.insert_events([event(T0_NS + 2 * 10**9, "bradycardia")])
    # Execute
    items = client.get("/api/labels/review?client_id=p1").get_json()["items"]
    # Assert
    assert [(i["target"], i["label"]) for i in items] == [("event", "bradycardia"), ("beat", "S")]
    assert all(i["snippet"] is None for i in items)


def test_label_form_stores_delivers_and_audits(client: FlaskClient, hub, store, feed) -> None:
    # Prepare
    login(client)
    _stream_with_flagged_beat(hub)
    # Execute
    resp = client.post("/labels", data={"client_id": "p1", "target": "beat", "t_ns": str(V_T),
                                         "label": "S", "note": "aberrant", "next": "/labels",
                                         "csrf_token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 302 and resp.headers["Location"] == "/labels"
    [rec] = store.list_labels("p1")
    assert (rec.label, rec.t_ns, rec.author, rec.note, rec.state) == (
        "S",
        V_T,
        "alice",
        "aberrant",
        LabelState.DELIVERED,
    )
    assert [(lb.label_id, lb.label, lb.t_ns, lb.target) for lb in feed.published] == [
        (rec.label_id, "S", V_T, "beat")
    ]
    assert store.list_audit(action="label")[0].actor == "alice"
    assert b"stored and delivered" in client.get("/labels?show=all").data
    assert (
        client.get("/api/labels/review").get_json()["items"] == []
    )  # labelled: off the to-do list


def test_label_waits_while_broker_is_down_then_is_redelivered(
    client: FlaskClient, hub, store, feed
) -> None:
    # Prepare
    login(client)
    store.insert_events([event(T0_NS)])
    feed.up = False
    # Execute
    resp = client.post("/api/labels", json={"client_id": "p1", "target": "event", "t_ns": T0_NS,
                                            "label": "false_alarm"},
                       headers={"X-CSRF-Token": csrf_of(client)})  # fmt: skip
    pending = [lb.state for lb in store.list_labels("p1")]
    feed.up = True
    sent = redeliver(store, feed)
    # Assert
    assert resp.status_code == 201 and resp.get_json()["delivered"] is False
    assert pending == [LabelState.PENDING]
    assert sent == 1 and [lb.label for lb in feed.published] == ["false_alarm"]
    assert [lb.state for lb in store.list_labels("p1")] == [LabelState.DELIVERED]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"client_id": "p1", "target": "beat", "t_ns": V_T, "label": "X"}, 400, "one of"),
        ({"client_id": "p1", "target": "rhythm", "t_ns": V_T, "label": "N"}, 400, "target"),
        ({"client_id": "p1", "target": "beat", "t_ns": "soon", "label": "N"}, 400, "whole number"),
        ({"client_id": "p1", "target": "beat", "t_ns": -1, "label": "N"}, 400, "between"),
        (
            {"client_id": "p1", "target": "event", "t_ns": V_T, "label": "DROP TABLE"},
            400,
            "lower-case",
        ),
        ({"client_id": "p1", "target": "beat", "t_ns": V_T + 1, "label": "N"}, 404, "no beat"),
        (
            {"client_id": "ghost", "target": "beat", "t_ns": V_T, "label": "N"},
            404,
            "Unknown patient",
        ),
        ({"target": "beat", "t_ns": V_T, "label": "N"}, 400, "client_id"),
        (
            {"client_id": "p1", "target": "beat", "t_ns": V_T, "label": "N", "note": "x" * 501},
            400,
            "longer",
        ),
    ],
)
def test_bad_label_input_is_a_clear_json_error(client: FlaskClient, hub, store, feed, body: dict,
                                               status: int, message: str) -> None:  # fmt: skip
    # Prepare
    login(client)
    _stream_with_flagged_beat(hub)
    # Execute
    resp = client.post("/api/labels", json=body, headers={"X-CSRF-Token": csrf_of(client)})
    # Assert
    assert resp.status_code == status
    assert message in resp.get_json()["error"]["message"]
    assert store.list_labels("p1") == [] and feed.published == []


def test_malformed_json_body_is_400(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.post("/api/labels", data="{not json", content_type="application/json",
                       headers={"X-CSRF-Token": csrf_of(client)})  # fmt: skip
    # Assert
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]["message"]


def test_malformed_label_form_gives_error_page(client: FlaskClient) -> None:
    # Prepare
    login(client)
    # Execute
    resp = client.post("/labels", data={"client_id": "p1", "csrf_token": csrf_of(client)})
    # Assert
    assert resp.status_code == 400 and b"Error 400" in resp.data and b"target" in resp.data


def test_delivered_label_is_sent_again_until_the_device_acknowledges_it(
    client: FlaskClient, hub, store, feed
) -> None:
    # Prepare: a label the broker took (delivered) but the device never acknowledged, e.g.
    # the broker was killed before the device's session got it
    login(client)
    store.insert_events([event(T0_NS)])
    client.post("/api/labels", json={"client_id": "p1", "target": "event", "t_ns": T0_NS,
                                     "label": "false_alarm"},
                headers={"X-CSRF-Token": csrf_of(client)})  # fmt: skip
    [rec] = store.list_labels("p1")
    now = rec.updated_at
    # Execute / Assert: not to an offline device (its broker session holds it: resending every
    # minute for days filled the session's queue until the broker dropped its messages)
    assert redeliver(store, feed, resend_after_s=60, clock=lambda: now + 6100) == 0
    # Execute / Assert: online: not again at once; again once the resend time passed
    store.set_client_status("p1", online=True, seen_at=now)
    assert redeliver(store, feed, resend_after_s=60, clock=lambda: now + 1) == 0
    assert redeliver(store, feed, resend_after_s=60, clock=lambda: now + 61) == 1
    assert [lb.label_id for lb in feed.published] == [rec.label_id, rec.label_id]
    # Assert: once acknowledged, never again
    store.acknowledge_labels("p1", [rec.label_id])
    assert redeliver(store, feed, resend_after_s=60, clock=lambda: now + 1000) == 0


def test_labels_of_two_events_starting_on_one_beat_are_both_kept(
    client: FlaskClient, hub, store, feed
) -> None:
    # Prepare: a VT run and a tachycardia episode detected from the same beat (labels were
    # keyed by start time: the clinician's second label replaced the first, and the review
    # page showed it on both events)
    store.insert_events([event(T0_NS, "vt_run"), event(T0_NS, "tachycardia")])
    login(client)
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {"client_id": "p1", "target": "event", "t_ns": T0_NS}
    # Execute / Assert: without naming the event, a clear 400
    resp = client.post("/api/labels", json=body | {"label": "vt_run"}, headers=headers)
    assert resp.status_code == 400 and "2 events start" in resp.get_json()["error"]["message"]
    for event_id, label in (("p1:vt_run:" + str(T0_NS), "vt_run"),
                            ("p1:tachycardia:" + str(T0_NS), "false_alarm")):  # fmt: skip
        resp = client.post("/api/labels", json=body | {"label": label, "event_id": event_id},
                           headers=headers)  # fmt: skip
        assert resp.status_code == 201, resp.get_json()
    bad = client.post("/api/labels", json=body | {"label": "x", "event_id": "p1:fall:1"},
                      headers=headers)  # fmt: skip
    assert bad.status_code == 404
    # Assert: both kept, each shown on its own event
    items = client.get("/api/labels/review?show=all").get_json()["items"]
    shown = {i["item_id"]: i["clinician_label"]["label"] for i in items if i["target"] == "event"}
    assert shown == {f"p1:vt_run:{T0_NS}": "vt_run", f"p1:tachycardia:{T0_NS}": "false_alarm"}
