"""Contract: clients, predictions, events and clinician labels (both backends)."""

from __future__ import annotations

import math
import random

import pytest

from common.types import BeatPrediction, Event
from store import LabelState, StatusReport, Store
from tests.store.conftest import T0, FakeClock

SEC = 1_000_000_000  # ns


def _beats(client: str, n: int, start_ns: int = 0, seed: int = 0) -> list[BeatPrediction]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = rng.choice("NNNNSV")
        p = round(rng.uniform(0.5, 1.0), 6)
        rr = math.nan if i == 0 else round(rng.uniform(0.5, 1.2), 6)
        out.append(BeatPrediction(client, start_ns + i * SEC, i * 360, label, {label: p}, "3", rr))
    return out


def _key(b: BeatPrediction) -> tuple[object, ...]:
    """Comparable form (NaN RR intervals compare equal)."""
    return (b.client_id, b.t_ns, b.sample, b.label, b.probs, b.model_version,
            None if math.isnan(b.rr_s) else b.rr_s)  # fmt: skip


def test_register_and_status_reports(store: Store, clock: FakeClock) -> None:
    # Prepare
    store.register_client("p1", credentials_hash="pbkdf2:x", task="beat", dataset="mitdb")

    # Execute
    applied = store.set_client_status("p1", online=True, seen_at=T0 + 10, model_version="4")
    unknown = store.set_client_status("p9", online=True, seen_at=T0)
    clock.advance(1)
    again = store.register_client("p1", credentials_hash="pbkdf2:y", task="ptb", dataset="ptb")

    # Assert
    assert applied and unknown
    p1 = store.get_client("p1")
    assert p1 == again
    assert p1 is not None and p1.online and p1.last_seen == T0 + 10 and p1.model_version == "4"
    assert (p1.credentials_hash, p1.task, p1.dataset, p1.registered_at) == (
        "pbkdf2:y", "ptb", "ptb", T0,
    )  # fmt: skip
    assert [c.client_id for c in store.list_clients()] == ["p1", "p9"]
    assert [c.client_id for c in store.list_clients(task="ptb")] == ["p1"]
    store.set_client_status("p9", online=False, seen_at=T0 + 20)
    assert [c.client_id for c in store.list_clients(online=True)] == ["p1"]
    assert store.get_client("p9") is not None
    assert store.get_client("nobody") is None


def test_status_reports_in_a_batch_apply_in_order(store: Store) -> None:
    # Prepare: a reconnect storm: heartbeats, a Last Will stamped at connect time, a version
    reports = [
        StatusReport("p1", True, T0 + 10, "3"),
        StatusReport("p2", True, T0 + 10),
        StatusReport("p1", False, T0 + 5),  # the Last Will: older stamp, still offline
        StatusReport("p2", True, T0 + 30, "4"),
        StatusReport("p2", True, T0 + 20),  # late: last_seen keeps T0 + 30, version kept
    ]
    # Execute
    stored = store.set_client_statuses(reports)
    # Assert
    p1, p2 = store.get_client("p1"), store.get_client("p2")
    assert stored == 5 and store.set_client_statuses([]) == 0
    assert p1 is not None and (p1.online, p1.last_seen, p1.model_version) == (False, T0 + 10, "3")
    assert p2 is not None and (p2.online, p2.last_seen, p2.model_version) == (True, T0 + 30, "4")
    with pytest.raises(ValueError, match="client_id"):
        store.set_client_statuses([StatusReport("", True, T0)])


def test_last_will_marks_offline_although_stamped_at_connect_time(store: Store) -> None:
    # Prepare: the device connected at T0 (will registered then), heartbeats until T0 + 60
    store.set_client_status("p1", online=True, seen_at=T0, model_version="3")
    store.set_client_status("p1", online=True, seen_at=T0 + 60)

    # Execute: the broker publishes the Last Will stamped T0
    store.set_client_status("p1", online=False, seen_at=T0)

    # Assert: offline, last_seen kept at the latest heartbeat, model version kept
    p1 = store.get_client("p1")
    assert p1 is not None
    assert (p1.online, p1.last_seen, p1.model_version) == (False, T0 + 60, "3")


def test_predictions_are_idempotent_and_queryable(store: Store) -> None:
    # Prepare
    beats = _beats("p1", 50) + _beats("p2", 10, seed=1)

    # Execute
    first = store.insert_predictions(beats)
    again = store.insert_predictions(beats[40:] + _beats("p1", 5, start_ns=50 * SEC, seed=2))

    # Assert
    assert (first, again) == (60, 5)
    got = store.list_predictions("p1", limit=1000)
    assert [_key(b) for b in got[:50]] == [_key(b) for b in beats[:50]]
    assert math.isnan(got[0].rr_s) and got[1].rr_s == beats[1].rr_s
    assert [b.t_ns for b in store.list_predictions("p1", since_ns=10 * SEC, until_ns=13 * SEC)] == [
        10 * SEC, 11 * SEC, 12 * SEC,
    ]  # fmt: skip
    assert [b.t_ns for b in store.latest_predictions("p1", 3)] == [52 * SEC, 53 * SEC, 54 * SEC]
    counts = store.prediction_counts("p1", until_ns=50 * SEC)
    assert counts == {lb: sum(b.label == lb for b in beats[:50]) for lb in counts}
    assert sum(counts.values()) == 50
    assert store.list_predictions("nobody") == []
    assert len(store.list_predictions("p1", limit=7)) == 7


def test_events_upsert_grows_an_episode_but_not_across_clients(store: Store) -> None:
    # Prepare
    ev = Event("e-1", "p1", "af_episode", 10 * SEC, 40 * SEC, {"hr_bpm": 118.0})

    # Execute
    store.insert_events([ev, Event("e-2", "p1", "vt_run", 50 * SEC, 52 * SEC, {"n_beats": 4})])
    store.insert_events([Event("e-1", "p1", "af_episode", 10 * SEC, 90 * SEC, {"hr_bpm": 121.5})])
    store.insert_events([Event("e-1", "p2", "fall", 0, 1, {})])  # another client, same id

    # Assert
    events = store.list_events("p1")
    assert [(e.event_id, e.t_end_ns) for e in events] == [("e-1", 90 * SEC), ("e-2", 52 * SEC)]
    assert events[0].details == {"hr_bpm": 121.5}
    assert store.list_events("p2") == []
    assert [e.event_id for e in store.latest_events("p1", 1)] == ["e-2"]
    assert [e.event_id for e in store.list_events("p1", since_ns=20 * SEC)] == ["e-2"]
    assert store.list_events("p1", until_ns=10 * SEC) == []


def test_label_lifecycle(store: Store, clock: FakeClock) -> None:
    # Prepare
    a = store.add_label(client_id="p1", target="beat", t_ns=5 * SEC, label="V", author="dr_a")
    clock.advance(1)
    b = store.add_label(client_id="p1", target="event", t_ns=9 * SEC, label="af", author="dr_a",
                        label_id="L-b", event_id="p1:af:9")  # fmt: skip

    # Execute / Assert: pending -> delivered -> acknowledged
    assert [lb.label_id for lb in store.pending_labels("p1")] == [a.label_id, "L-b"]
    assert store.mark_labels_delivered([a.label_id, "L-b", "missing"]) == 2
    assert store.labels_to_send("p1", resend_before=clock.now) == []  # just sent
    clock.advance(60)
    resend = [lb.label_id for lb in store.labels_to_send("p1", resend_before=clock.now - 30)]
    assert sorted(resend) == sorted([a.label_id, "L-b"])  # delivered, not acknowledged: again
    assert store.mark_labels_delivered([a.label_id]) == 0  # still delivered; time refreshed
    assert [lb.label_id for lb in store.labels_to_send("p1", resend_before=clock.now - 30)] == [
        "L-b"
    ]
    assert store.pending_labels("p1") == []
    assert store.acknowledge_labels("p2", [a.label_id]) == 0  # not that client's label
    assert store.acknowledge_labels("p1", [a.label_id]) == 1
    states = {lb.label_id: lb.state for lb in store.list_labels("p1")}
    assert states == {a.label_id: LabelState.ACKNOWLEDGED, b.label_id: LabelState.DELIVERED}
    # Relabelling the same beat replaces it under a new id, pending again.
    clock.advance(1)
    again = store.add_label(client_id="p1", target="beat", t_ns=5 * SEC, label="S", author="dr_b")
    assert again.label_id != a.label_id and again.label == "S" and again.author == "dr_b"
    assert again.state is LabelState.PENDING and again.created_at == T0
    assert again.updated_at == T0 + 62
    assert [lb.label_id for lb in store.list_labels("p1", state=LabelState.PENDING)] == [
        again.label_id
    ]
    assert len(store.list_labels("p1")) == 2  # replaced, not added
    with pytest.raises(ValueError, match="target"):
        store.add_label(client_id="p1", target="window", t_ns=0, label="N", author="x")


def test_a_receipt_for_a_label_does_not_acknowledge_its_later_correction(
    store: Store, clock: FakeClock
) -> None:
    # Prepare: V delivered to the device; the clinician corrects it to S while the broker is
    # unreachable from the web (the correction stays pending); then the device's receipt for
    # V arrives. It used to acknowledge the correction too (same id): S was never sent and the
    # device kept training on V.
    first = store.add_label(client_id="p1", target="beat", t_ns=SEC, label="V", author="dr")
    store.mark_labels_delivered([first.label_id])
    clock.advance(5)
    fix = store.add_label(client_id="p1", target="beat", t_ns=SEC, label="S", author="dr")
    # Execute
    acknowledged = store.acknowledge_labels("p1", [first.label_id])
    # Assert: the correction is still to be sent, and its own receipt settles it
    assert acknowledged == 0
    assert [(lb.label_id, lb.label) for lb in store.pending_labels("p1")] == [(fix.label_id, "S")]
    assert store.acknowledge_labels("p1", [fix.label_id]) == 1


def test_labels_of_two_events_starting_on_one_beat_are_both_kept(store: Store) -> None:
    # Labels were keyed by start time: the second event's label replaced the first's
    vt = store.add_label(client_id="p1", target="event", t_ns=SEC, label="vt_run", author="dr",
                         event_id="p1:vt_run:1")  # fmt: skip
    tachy = store.add_label(client_id="p1", target="event", t_ns=SEC, label="false_alarm",
                            author="dr", event_id="p1:tachycardia:1")  # fmt: skip
    kept = {lb.event_id: lb.label for lb in store.list_labels("p1")}
    assert kept == {"p1:vt_run:1": "vt_run", "p1:tachycardia:1": "false_alarm"}
    assert vt.label_id != tachy.label_id
    with pytest.raises(ValueError, match="event_id"):
        store.add_label(client_id="p1", target="event", t_ns=SEC, label="x", author="dr")
    with pytest.raises(ValueError, match="event_id"):
        store.add_label(client_id="p1", target="beat", t_ns=SEC, label="V", author="dr",
                        event_id="p1:vt_run:1")  # fmt: skip


def test_prune_predictions_for_retention(store: Store) -> None:
    # Prepare
    store.insert_predictions(_beats("p1", 10) + _beats("p2", 10, seed=3))

    # Execute
    one_client = store.prune_predictions(3 * SEC, client_id="p1")
    everyone = store.prune_predictions(5 * SEC)

    # Assert
    assert (one_client, everyone) == (3, 2 + 5)
    assert [b.t_ns for b in store.list_predictions("p1")][0] == 5 * SEC
    assert len(store.list_predictions("p2")) == 5


def test_erase_client_data_removes_one_patient_only(store: Store) -> None:
    # Prepare
    for cid in ("p1", "p2"):
        store.register_client(cid, credentials_hash="h")
        store.insert_predictions(_beats(cid, 4))
        store.insert_events([Event(f"e-{cid}", cid, "vt_run", 0, SEC, {})])
        store.add_label(client_id=cid, target="beat", t_ns=0, label="V", author="dr")
        store.create_patient_token(f"tok-{cid}", cid, expires_at=None)

    # Execute
    deleted = store.erase_client_data("p1")

    # Assert
    assert deleted == {
        "predictions": 4, "events": 1, "labels": 1, "patient_tokens": 1, "client": 1,
    }  # fmt: skip
    assert store.get_client("p1") is None and store.list_predictions("p1") == []
    assert store.list_events("p1") == [] and store.list_labels("p1") == []
    assert store.get_patient_token("tok-p1") is None
    assert len(store.list_predictions("p2")) == 4 and store.get_client("p2") is not None
