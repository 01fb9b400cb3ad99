"""Durable ingestion in the aggregator: predictions, events, statuses and label receipts are
stored before the broker is acknowledged, receipts go back to the device, repeats change
nothing, and a device speaks only for itself."""

from __future__ import annotations

import pytest

from common import protocol as proto
from common.payloads import LabelAck, encode_label_ack
from common.pred_payloads import decode_pred_ack, encode_predictions
from common.types import BeatPrediction, Event
from store import LabelState
from tests.cloud_aggregator.service_support import drain, seeded, service_on
from tests.store.conftest import Backend

SEC = 1_000_000_000


def beats(cid: str, n: int, t0: int = 0) -> list[BeatPrediction]:
    return [BeatPrediction(cid, t0 + i * SEC, i * 360, "N", {"N": 0.9}, "v1", 0.8)
            for i in range(n)]  # fmt: skip


def test_predictions_are_stored_then_acknowledged_with_a_receipt(backend: Backend) -> None:
    # Prepare
    store = seeded(backend)
    service, broker = service_on(store, backend)
    topic = proto.client_topic(proto.Channel.PRED, "dev-1")
    ev = Event("dev-1:vt_run:5", "dev-1", "vt_run", 5 * SEC, 9 * SEC, {"beats": 4})
    payload = encode_predictions("dev-1", beats("dev-1", 5), [ev], "batch-1")
    # Execute: delivered twice (a QoS 1 redelivery, or the device resending without a receipt)
    first = broker.put(topic, payload)
    second = broker.put(topic, payload)
    drain(service, broker)
    # Assert: stored once, both acknowledged, a receipt naming the batch for each
    assert len(store.list_predictions("dev-1", limit=100)) == 5
    assert [e.event_id for e in store.list_events("dev-1")] == [ev.event_id]
    assert {first, second} <= set(broker.acked)
    receipts = [decode_pred_ack(p) for t, p in broker.published if t.endswith("predack/dev-1")]
    assert [r.batch_ids for r in receipts] == [("batch-1",), ("batch-1",)]


def test_a_bad_row_costs_that_row_not_its_batch(backend: Backend) -> None:
    # Prepare: a device without the outbox's own check (older firmware) batches one beat whose
    # RR spans a 75 s gap (the wire allows 60 s) and an event ending before it starts with
    # four good beats; before, the whole payload was refused and resent forever
    store = seeded(backend)
    service, broker = service_on(store, backend)
    rows = beats("dev-1", 5)
    body = proto.decode(encode_predictions("dev-1", rows, [], "batch-7")).body
    body["beats"][2]["rr_s"] = 75.0
    body["events"] = [
        {"event_id": "dev-1:x:1", "kind": "vt_run", "t_start_ns": 9, "t_end_ns": 5, "details": {}}
    ]
    # Execute
    msg = broker.put(proto.client_topic(proto.Channel.PRED, "dev-1"), proto.encode("pred", body))
    drain(service, broker)
    # Assert: the four good beats stored, the bad rows counted, the batch acknowledged with a
    # receipt (resending could not fix it), nothing counted as a refused message
    stored = sorted(b.t_ns for b in store.list_predictions("dev-1", limit=100))
    assert stored == [r.t_ns for i, r in enumerate(rows) if i != 2]
    assert store.list_events("dev-1") == []
    assert service.ingest.refused_rows == 2
    assert msg in broker.acked
    receipts = [decode_pred_ack(p) for t, p in broker.published if t.endswith("predack/dev-1")]
    assert [r.batch_ids for r in receipts] == [("batch-7",)]
    assert service.rejects.as_dict() == {}


@pytest.mark.parametrize("channel", [proto.Channel.PRED, proto.Channel.LABEL_ACK])
def test_a_device_cannot_report_for_another(backend: Backend, channel: proto.Channel) -> None:
    # Prepare: p2 names p1 in the body of a message on its own topic
    store = seeded(backend)
    label = store.add_label(client_id="p1", target="beat", t_ns=SEC, label="V", author="dr")
    store.mark_labels_delivered([label.label_id])
    service, broker = service_on(store, backend)
    body = (
        encode_predictions("p1", beats("p1", 3), [], "b")
        if channel == proto.Channel.PRED
        else encode_label_ack(LabelAck("p1", (label.label_id,), 1))
    )
    # Execute
    broker.put(proto.client_topic(channel, "p2"), body)
    drain(service, broker)
    # Assert
    assert store.list_predictions("p1", limit=10) == []
    assert store.list_labels("p1")[0].state is LabelState.DELIVERED
    assert service.rejects.as_dict() == {"schema": 1}


def test_label_receipt_acknowledges_only_the_devices_labels(backend: Backend) -> None:
    # Prepare
    store = seeded(backend)
    label = store.add_label(client_id="p1", target="beat", t_ns=SEC, label="V", author="dr")
    store.mark_labels_delivered([label.label_id])
    service, broker = service_on(store, backend)
    own = LabelAck("p1", (label.label_id, "unknown-id"), 1)
    # Execute
    broker.put(proto.client_topic(proto.Channel.LABEL_ACK, "p1"), encode_label_ack(own))
    drain(service, broker)
    # Assert
    assert store.list_labels("p1")[0].state is LabelState.ACKNOWLEDGED


def test_a_reconnect_storm_of_statuses_is_stored_in_one_transaction(backend: Backend) -> None:
    # Prepare: 300 devices come online at once, one status is malformed (before: one store
    # transaction per status, 100,000 devices took minutes to be seen online)
    from common.payloads import (
        Status,
        encode_status,
    )

    store = seeded(backend)
    service, broker = service_on(store, backend)
    calls: list[int] = []
    real = store.set_client_statuses

    def counted(reports: object) -> int:
        calls.append(len(reports))  # type: ignore[arg-type]
        return real(reports)  # type: ignore[arg-type]

    store.set_client_statuses = counted  # type: ignore[method-assign]
    ids = [f"dev-{i:03d}" for i in range(300)]
    for cid in ids:
        broker.put(proto.client_topic(proto.Channel.STATUS, cid),
                   encode_status(Status(cid, True, 1_000)))  # fmt: skip
    broker.put(proto.client_topic(proto.Channel.STATUS, "dev-x"), b"\x00garbage")
    # Execute
    drain(service, broker)
    # Assert: a few writes (one per step's batch), the malformed one counted, all acknowledged
    assert sum(calls) == 300 and len(calls) <= 5
    assert sum(service.online.values()) == 300
    assert service.rejects.as_dict() == {"schema": 1}
    assert len(broker.acked) == 301
    assert len(store.list_clients(online=True)) == 300


def test_a_last_will_delivered_after_the_next_connection_came_online_is_ignored(
    backend: Backend,
) -> None:
    # Prepare: on a clustered broker losing a node, a device's connection 1 is closed, it
    # reconnects (connection 2, online), and connection 1's Will is stored after that (before:
    # the device stayed offline for the aggregator, and no round could open without it)
    from common.payloads import (
        WILL_SEQ,
        Status,
        encode_status,
    )

    store = seeded(backend)
    service, broker = service_on(store, backend)
    topic = proto.client_topic(proto.Channel.STATUS, "dev-1")

    def status(online: bool, session: int, seq: int) -> bytes:
        return encode_status(Status("dev-1", online, session + seq, session=session, seq=seq))

    # Execute
    broker.put(topic, status(True, 100, 1))
    broker.put(topic, status(True, 200, 1))
    broker.put(topic, status(False, 100, WILL_SEQ))  # connection 1's Will, late
    drain(service, broker)
    late_will_ignored = service.online["dev-1"]
    broker.put(topic, status(False, 200, 2))  # connection 2: a drop-out it announced
    broker.put(topic, status(True, 200, 3))  # and back
    drain(service, broker)
    back = service.online["dev-1"]
    broker.put(topic, status(False, 200, WILL_SEQ))  # connection 2's own Will
    broker.put(topic, encode_status(Status("dev-1", True, 1)))  # unordered: applied as it comes
    drain(service, broker)
    # Assert
    assert late_will_ignored and back and service.online["dev-1"]
    assert service.ingest.stale_statuses == 1
    assert len(broker.acked) == 7  # the stale one is acknowledged too: nothing redelivered
    assert [c.online for c in store.list_clients() if c.client_id == "dev-1"] == [True]
