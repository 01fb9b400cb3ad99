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
