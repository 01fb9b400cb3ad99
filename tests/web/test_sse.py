"""The SSE stream: snapshot first, then hub messages, keep-alives, end, client cap."""

from __future__ import annotations

import json
import threading

from flask import Flask
from flask.testing import FlaskClient

from common.payloads import Status
from tests.web.conftest import T0_NS, beat, ecg_chunk, login
from web.live.fanout import Fanout, Message, Subscription
from web.live.sse import format_event, stream


def parse_frames(text: str) -> list[tuple[str, dict | None]]:
    """(event name or ':' for comments / 'retry', data) of each SSE frame."""
    out: list[tuple[str, dict | None]] = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        if frame.startswith(":"):
            out.append((":", None))
            continue
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        if "retry" in fields:
            out.append(("retry", None))
        else:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_format_event_is_one_data_line() -> None:
    # Execute
    frame = format_event("live", {"a": "x\ny", "b": [1, 2]}, "7")
    # Assert
    assert frame == 'event: live\nid: 7\ndata: {"a":"x\\ny","b":[1,2]}\n\n'


def test_stream_relays_messages_then_ends_and_unsubscribes() -> None:
    # Prepare
    fan = Fanout(max_clients=4, queue_size=8)
    sub = fan.subscribe("p1")
    assert sub is not None
    fan.publish("p1", Message("pred", {"x": 1}))
    closed: list[bool] = []
    ticks = iter([0.0, 0.0, 0.5, 2.0, 2.0, 2.0])
    # Execute
    frames = list(stream(sub, {"streams": {}}, retry_ms=1500, keepalive_s=0.01, max_stream_s=1.0,
                         on_close=lambda: closed.append(True), clock=lambda: next(ticks)))  # fmt: skip
    # Assert
    assert frames[0] == "retry: 1500\n\n"
    assert parse_frames("".join(frames[1:])) == [
        ("snapshot", {"streams": {}}),
        ("pred", {"x": 1}),
        (":", None),
    ]
    assert closed == [True]


def test_slow_client_drops_oldest_and_is_told() -> None:
    # Prepare
    sub = Subscription("p1", maxsize=2)
    for i in range(5):
        sub.put(Message("live", {"i": i}))
    ticks = iter([0.0, 0.0, 10.0])
    # Execute
    frames = list(stream(sub, None, retry_ms=1, keepalive_s=1, max_stream_s=5, on_close=lambda: None,
                         clock=lambda: next(ticks)))  # fmt: skip
    # Assert
    events = parse_frames("".join(frames[1:]))
    assert events[1:] == [("live", {"i": 3}), ("live", {"i": 4}), ("dropped", {"count": 3})]


def test_sse_endpoint_streams_snapshot_and_live_from_hub(
    app: Flask, client: FlaskClient, hub
) -> None:
    # Prepare
    login(client)
    hub.on_live("p1", ecg_chunk(0))
    publisher = threading.Timer(0.05, lambda: (hub.on_live("p1", ecg_chunk(25)),
                                               hub.on_predictions("p1", [beat(T0_NS, "V")], []),
                                               hub.on_status(Status("p1", False, T0_NS))))  # fmt: skip
    # Execute
    publisher.start()
    resp = client.get("/api/patients/p1/stream")
    text = resp.get_data(as_text=True)  # ends after sse_max_stream_s (0.3 s in the fixture)
    publisher.join()
    # Assert
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    frames = parse_frames(text)
    names = [n for n, _ in frames]
    assert names[:2] == ["retry", "snapshot"]
    assert len(frames[1][1]["streams"]["ecg"]["t"]) == 25
    live = [d for n, d in frames if n == "live"]
    assert live and live[0]["seq"] == 25 and len(live[0]["data"][0]) == 25
    assert [d["latest_beat"]["label"] for n, d in frames if n == "pred"] == ["V"]
    assert [d["online"] for n, d in frames if n == "status"] == [False]
    assert ":" in names  # keep-alive comments while idle
    assert hub.fanout.count() == 0  # unsubscribed at the end


def test_too_many_streams_is_503(app: Flask, client: FlaskClient, hub) -> None:
    # Prepare
    login(client)
    held = [
        hub.fanout.subscribe("p1")
        for _ in range(app.extensions["medchain.settings"].sse_max_clients)
    ]
    # Execute
    resp = client.get("/api/patients/p1/stream")
    # Assert
    assert all(held)
    assert (
        resp.status_code == 503 and "Too many live streams" in resp.get_json()["error"]["message"]
    )


def _hold_stream(client: FlaskClient, opened: list[int], release: threading.Event) -> None:
    """Open a live stream in this thread, keep it open until ``release``."""
    resp = client.get("/api/patients/p1/stream", buffered=False)
    opened.append(resp.status_code)
    if resp.status_code == 200:
        next(iter(resp.response))  # the retry frame: subscribed
        release.wait(10)
    resp.close()


def test_a_head_request_takes_no_stream_slot(app: Flask, client: FlaskClient) -> None:
    # A HEAD probe (curl -I, an uptime monitor) subscribed, and its body generator, whose
    # ``finally`` frees the slot, never ran: four probes locked the clinician out of live view
    login(client)
    fanout = app.extensions["medchain.hub"].fanout
    cap = app.extensions["medchain.settings"].sse_max_per_principal
    for _ in range(cap + 1):
        assert client.head("/api/patients/p1/stream").status_code == 200
    assert fanout.count() == 0
    resp = client.get("/api/patients/p1/stream")
    assert resp.status_code == 200
    resp.close()
    assert fanout.count() == 0  # a stream closed before it was read frees its slot too


def test_one_principal_cannot_take_every_stream_slot(
    app: Flask, client: FlaskClient, patient_token: str
) -> None:
    # Prepare: one patient code opens as many streams as it may (each in its own thread)
    import time

    from tests.web.conftest import login_patient

    login_patient(client, patient_token)
    cap = app.extensions["medchain.settings"].sse_max_per_principal
    opened: list[int] = []
    release = threading.Event()
    holders = [
        threading.Thread(target=_hold_stream, args=(client, opened, release)) for _ in range(cap)
    ]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 10
    while app.extensions["medchain.hub"].fanout.count() < cap and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        # Execute
        refused = client.get("/api/patients/p1/stream")
        clinician = app.test_client()
        login(clinician)
        other: list[int] = []
        done = threading.Event()
        done.set()
        _hold_stream(clinician, other, done)
    finally:
        release.set()
        for t in holders:
            t.join(10)
    # Assert
    assert opened == [200] * cap
    assert refused.status_code == 429
    assert "live streams" in refused.get_json()["error"]["message"]
    assert other == [200]


def test_revoked_code_stream_ends_within_the_recheck_interval(
    store, patient_token: str, feed
) -> None:
    # Prepare: long streams (30 s), revocation re-checked every 0.1 s
    import time

    from tests.web.conftest import SECRET, login_patient
    from web.app import create_app
    from web.security import hash_patient_token
    from web.settings import WebSettings

    settings = WebSettings(secret_key=SECRET, broker_url="", sse_keepalive_s=0.05,
                           sse_max_stream_s=30.0, sse_auth_recheck_s=0.1)  # fmt: skip
    app = create_app(settings, store=store, feed=feed)
    store.register_client("p1")
    client = app.test_client()
    login_patient(client, patient_token)
    revoked_at: list[float] = []

    def revoke() -> None:
        revoked_at.append(time.monotonic())
        store.revoke_patient_token(hash_patient_token(patient_token))

    timer = threading.Timer(0.3, revoke)
    # Execute: read the stream to its end; revoke the code while it is open
    timer.start()
    resp = client.get("/api/patients/p1/stream")  # returns when the stream ends
    ended_at = time.monotonic()
    timer.join()
    # Assert
    assert resp.status_code == 200
    assert ended_at - revoked_at[0] < 1.0
    assert ("revoked", {"reason": "access ended"}) in parse_frames(resp.get_data(as_text=True))
    assert app.extensions["medchain.hub"].fanout.count() == 0
