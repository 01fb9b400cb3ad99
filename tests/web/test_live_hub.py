"""Pure live-feed core: ring buffer, fan-out queues, hub state and snippets."""

from __future__ import annotations

import numpy as np
import pytest

from common.payloads import Status
from common.types import SignalChunk, StreamKind
from tests.web.conftest import T0_NS, beat, ecg_chunk, event
from web.live.fanout import Fanout, Message
from web.live.hub import LiveHub
from web.live.ring import StreamRing


def _chunk(seq: int, n: int, fs: float = 100.0, ch: int = 1) -> SignalChunk:
    values = np.arange(seq, seq + n, dtype=float)[:, None].repeat(ch, axis=1)
    return SignalChunk(
        StreamKind.ACC if ch == 3 else StreamKind.ECG,
        fs,
        T0_NS + round(seq * 1e9 / fs),
        values,
        seq,
    )


def test_ring_keeps_last_capacity_samples_in_order() -> None:
    # Prepare
    ring = StreamRing(StreamKind.ECG, 100.0, 1, capacity=50)
    # Execute
    for k in range(0, 120, 30):
        ring.push(_chunk(k, 30))
    t, v = ring.snapshot()
    # Assert
    assert len(ring) == 50
    assert v[:, 0].tolist() == list(range(70, 120))
    assert t[0] == pytest.approx(T0_NS / 1e9 + 0.70) and np.all(np.diff(t) > 0)
    assert ring.newest_s == pytest.approx(T0_NS / 1e9 + 1.19)


def test_ring_drops_redelivered_and_trims_overlap_counts_gaps() -> None:
    # Prepare
    ring = StreamRing(StreamKind.ECG, 100.0, 1, capacity=100)
    ring.push(_chunk(0, 20))
    # Execute
    dup = ring.push(_chunk(0, 20))
    overlap = ring.push(_chunk(10, 20))
    ring.push(_chunk(40, 10))
    # Assert
    assert dup is None and ring.duplicates == 2 and ring.gaps == 1
    assert (
        overlap is not None
        and overlap.seq == 20
        and overlap.samples[:, 0].tolist() == list(range(20, 30))
    )
    assert ring.snapshot()[1][:, 0].tolist() == list(range(30)) + list(range(40, 50))


def test_ring_window_and_mismatch() -> None:
    # Prepare
    ring = StreamRing(StreamKind.ACC, 100.0, 3, capacity=100)
    ring.push(_chunk(0, 100, ch=3))
    # Execute
    t, v = ring.window(T0_NS / 1e9 + 0.2, T0_NS / 1e9 + 0.3)
    # Assert
    assert v.shape == (10, 3) and v[0, 0] == 20
    with pytest.raises(ValueError, match="rate"):
        ring.push(_chunk(100, 10, fs=50.0, ch=3))


def test_fanout_caps_clients_and_routes_per_patient() -> None:
    # Prepare
    fan = Fanout(max_clients=2, queue_size=4)
    a, b = fan.subscribe("p1"), fan.subscribe("p2")
    # Execute
    third = fan.subscribe("p1")
    n = fan.publish("p1", Message("pred", {}))
    # Assert
    assert a is not None and b is not None and third is None and n == 1
    assert [m.event for m in a.get_batch(0)] == ["pred"] and b.get_batch(0) == []
    fan.unsubscribe(a)
    fan.unsubscribe(a)
    assert fan.count() == 1 and fan.subscribe("p1") is not None


def test_hub_rebuilds_ring_when_rate_changes_and_fans_out_new_part_only() -> None:
    # Prepare
    fan = Fanout(4, 16)
    hub = LiveHub(2.0, 10, fan)
    sub = fan.subscribe("p1")
    assert sub is not None
    # Execute
    hub.on_live("p1", ecg_chunk(0, fs=125.0))
    hub.on_live("p1", ecg_chunk(0, fs=125.0))  # redelivered: not sent again
    hub.on_live("p1", ecg_chunk(0, fs=250.0))
    # Assert
    msgs = sub.get_batch(0)
    assert [(m.event, m.data["fs"]) for m in msgs] == [("live", 125.0), ("live", 250.0)]
    assert hub.snapshot("p1")["streams"]["ecg"]["fs"] == 250.0


def test_hub_flags_abnormal_beats_and_events_once_with_snippets() -> None:
    # Prepare
    persisted = []
    hub = LiveHub(10.0, 10, Fanout(4, 16), on_flagged=persisted.append)
    for k in range(0, 250, 25):
        hub.on_live("p1", ecg_chunk(k))
    v_t = T0_NS + 500_000_000
    # Execute
    ev_t = T0_NS + 2 * 10**9
    hub.on_predictions("p1", [beat(T0_NS, "N"), beat(v_t, "V")], [event(ev_t)])
    hub.on_predictions("p1", [beat(v_t, "V")], [event(ev_t)])  # redelivery: no new items
    for k in range(250, 1000, 25):
        hub.on_live("p1", ecg_chunk(k))
    # Assert
    items = hub.flagged("p1")
    assert sorted((i.target, i.label) for i in items) == [("beat", "V"), ("event", "vt_run")]
    assert all(i.snippet is not None for i in items)
    ev = next(i for i in items if i.target == "event")
    assert ev.snippet["t"][0] == pytest.approx(-1.0) and ev.snippet["t"][-1] == pytest.approx(
        2.992, abs=0.01
    )
    assert len(persisted) == 2


def test_hub_without_ecg_finishes_items_after_wait_without_snippet() -> None:
    # Prepare
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    # Execute
    hub.on_predictions("p1", [beat(T0_NS, "S")], [])
    early = hub.flagged("p1")
    hub.on_predictions("p1", [beat(T0_NS + 10 * 10**9, "N")], [])
    # Assert
    assert early == []
    [item] = hub.flagged("p1")
    assert item.label == "S" and item.snippet is None


def test_hub_heart_rate_ignores_implausible_rr_and_uses_hr_stream() -> None:
    # Prepare
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    hr = SignalChunk(StreamKind.HR, 1.0, T0_NS, np.array([[64.0]]), 0)
    # Execute
    hub.on_live("p2", hr)
    hub.on_predictions(
        "p1", [beat(T0_NS + i, rr_s=rr) for i, rr in enumerate([1.0, 1.0, 9.0, float("nan")])], []
    )
    # Assert
    assert hub.snapshot("p1")["heart_rate_bpm"] == 60.0
    assert hub.snapshot("p2")["heart_rate_bpm"] == 64.0
    assert hub.snapshot("nobody") is None


def test_redelivered_old_predictions_do_not_move_latest_beat_or_hr() -> None:
    # Prepare
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    hub.on_predictions("p1", [beat(T0_NS + i * 10**9, rr_s=1.0) for i in range(3)], [])
    # Execute
    hub.on_predictions("p1", [beat(T0_NS, "V", rr_s=0.5)], [])
    # Assert
    snap = hub.snapshot("p1")
    assert snap["latest_beat"]["t_ns"] == T0_NS + 2 * 10**9 and snap["heart_rate_bpm"] == 60.0


def test_hub_status_is_published_and_kept() -> None:
    # Prepare
    fan = Fanout(4, 16)
    hub = LiveHub(10.0, 10, fan)
    sub = fan.subscribe("p1")
    assert sub is not None
    # Execute
    hub.on_status(Status("p1", True, T0_NS, "v3", None, "polar h10"))
    # Assert
    assert sub.get_batch(0)[0].data["detail"] == "polar h10"
    assert hub.snapshot("p1")["status"]["model_version"] == "v3"


def test_hub_keeps_a_device_online_when_its_last_will_comes_after_its_reconnect() -> None:
    # Prepare: connection 1's Will stored by a clustered broker after connection 2's online
    # status (before: the patient page said "offline" for a device that was sending)
    from common.payloads import WILL_SEQ

    fan = Fanout(4, 16)
    hub = LiveHub(10.0, 10, fan)
    sub = fan.subscribe("p1")
    assert sub is not None
    # Execute
    hub.on_status(Status("p1", True, T0_NS, session=100, seq=1))
    hub.on_status(Status("p1", True, T0_NS + 1, session=200, seq=1))
    hub.on_status(Status("p1", False, T0_NS, detail="connection lost", session=100, seq=WILL_SEQ))
    # Assert: the late Will is neither kept nor sent to the page
    assert hub.snapshot("p1")["status"]["online"] is True
    assert [m.data["online"] for m in sub.get_batch(0)] == [True, True]
