"""The aggregator service against hostile devices and a failing store, on both store backends.

One message must never cost more than itself: the six payloads that crash-looped the
aggregator (and every other hostile payload of tests/common/test_wire_hostile.py) are counted,
acknowledged and logged; nothing unvalidated reaches the store, so a restart on the same
database runs; a store outage is waited out, the message in hand handled once it is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest

from common import fl_protocol as fl
from common import protocol as proto
from store import DesiredTraining, StoreUnavailableError
from tests.cloud_aggregator.service_support import (
    CLIENTS,
    drain,
    online,
    open_round,
    seeded,
    service_on,
    update_payload,
)
from tests.store.conftest import Backend
from tests.support.hostile import HOSTILE, envelope, update_body


def test_hostile_messages_cost_one_message_each_and_a_restart_runs(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: three devices online, a round open
    store, service, broker, rnd = open_round(backend)
    # Execute: every hostile payload, on the update topic and the retained status topic of a
    # selected device, plus updates for the open round that are hostile only in their body
    mids = []
    for _, _, payload in HOSTILE:
        for channel in (proto.Channel.UPDATE, proto.Channel.STATUS):
            mids.append(broker.put(proto.client_topic(channel, "dev-1"), payload))
    w = np.zeros(2, "<f4").tobytes()
    rid = f'"{rnd.round_id}"'
    for over in ({"metrics": '{"loss":Infinity}'}, {"metrics": '{"x":' + "9" * 400 + "}"},
                 {"n_examples": "9" * 5000}, {"round_id": '"99999999999999999999"'}):  # fmt: skip
        body = update_body(**{"round_id": rid, "client_id": '"dev-2"', **over})
        mids.append(broker.put(proto.client_topic(proto.Channel.UPDATE, "dev-2"),
                               envelope("update", body, w)))  # fmt: skip
    mids.append(broker.put("medchain/v1/status/" + "x" * 5000, b"\x00" * 10))
    with caplog.at_level(logging.WARNING, logger="cloud_aggregator"):
        drain(service, broker)
    # Assert: all acknowledged and counted, one log line per message, nothing stored
    assert set(mids) <= set(broker.acked)
    assert service.rejects.total >= len(mids)
    assert "internal" not in service.rejects.as_dict()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) >= len(mids)
    assert store.count_updates(rnd.round_id) == 0
    assert {c.client_id for c in store.list_clients()} == set(CLIENTS)
    # Assert: a second service on the same database (a restart, a fresh replica) runs
    again, broker2 = service_on(store, backend)
    online(broker2)
    for _ in range(5):
        again.step()


def test_a_bug_in_handling_costs_one_message_not_the_service(backend: Backend) -> None:
    # Prepare: a store whose status write fails with an unexpected error for one device's
    # report (the batch holding it fails too, then each message is handled alone)
    store = seeded(backend)
    service, broker = service_on(store, backend)
    real = store.set_client_statuses

    def flaky(reports: Any) -> int:
        if any(r.client_id == CLIENTS[0] for r in reports):
            raise RuntimeError("a bug")
        return real(reports)

    store.set_client_statuses = flaky  # type: ignore[method-assign]
    # Execute
    online(broker)
    drain(service, broker)
    # Assert: the first message is counted as internal and acknowledged; the others stored
    assert service.rejects.as_dict() == {"internal": 1}
    assert len(broker.acked) == len(CLIENTS)
    assert len(store.list_clients()) == len(CLIENTS) - 1


def test_store_outage_is_waited_out_and_the_message_in_hand_kept(backend: Backend) -> None:
    # Prepare: the store refuses the first three writes as unavailable
    store = seeded(backend)
    service, broker = service_on(store, backend)
    service._backoff.base_s = 0.01  # noqa: SLF001 - keep the test fast
    real = store.set_client_statuses
    failures = {"left": 3}

    def down(reports: Any) -> int:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise StoreUnavailableError(backend.url, "connection refused")
        return real(reports)

    store.set_client_statuses = down  # type: ignore[method-assign]
    online(broker)
    stop = threading.Event()
    # Execute: run() until all statuses are stored (it must not return or raise meanwhile)
    t = threading.Thread(target=service.run, args=(stop,), kwargs={"max_seconds": 20})
    t.start()
    for _ in range(400):
        if len(store.list_clients()) == len(CLIENTS):
            break
        threading.Event().wait(0.05)
    stop.set()
    t.join(10)
    # Assert: every message stored once and acknowledged once, after the outage
    assert failures["left"] == 0
    assert len(store.list_clients()) == len(CLIENTS)
    assert sorted(broker.acked) == [1, 2, 3]


def test_oversized_chunked_updates_of_one_device_are_refused_at_its_quota(
    backend: Backend,
) -> None:
    # Prepare: a device streams chunks of many never-completed 1 MB "updates"
    store = seeded(backend)
    service, broker = service_on(store, backend)
    service.chunks.quota_bytes = 2 * 1024 * 1024
    blob = bytes(1024 * 1024)
    for i in range(8):
        parts = fl.split_message(proto.encode("update", {}, blob), f"m{i}", 256 * 1024)
        for part in parts[:-1]:  # never the last one
            broker.put(proto.chunk_topic(proto.Channel.UPDATE, "dev-1"), part)
    # Execute
    drain(service, broker)
    # Assert: no more than the quota is held for the device; the rest refused and counted
    from store.sql_base import SqlStoreBase

    assert isinstance(store, SqlStoreBase)
    with store._tx(write=False) as tx:  # noqa: SLF001 - the test reads the table directly
        tx.execute("SELECT COALESCE(SUM(LENGTH(blob)), 0) FROM update_chunk WHERE sender = ?",
                   ("dev-1",))  # fmt: skip
        row = tx.one()
    assert row is not None and int(row[0]) <= 2 * 1024 * 1024
    assert service.rejects.as_dict().get("schema", 0) > 0


def test_bad_training_config_stops_the_run_instead_of_crashing(backend: Backend) -> None:
    # Prepare: a config stored by something that skipped the web form's checks
    store = seeded(backend)
    store.set_training_control(desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg",
                               rounds=3, config={"deadline_s": "soon", "min_clients": -3},
                               updated_by="admin-json")  # fmt: skip
    service, broker = service_on(store, backend)
    online(broker)
    # Execute
    drain(service, broker)
    for _ in range(3):
        service.step()
    # Assert: no round, the run stopped with the reason in the audit log
    assert store.active_round("beat") is None
    assert store.get_training_control().desired == DesiredTraining.STOPPED
    reasons = [a.details.get("reason", "") for a in store.list_audit(limit=10)]
    assert any("invalid training config" in str(r) for r in reasons)


def test_a_batch_of_updates_survives_a_store_outage_and_is_stored_once(backend: Backend) -> None:
    # Prepare: a round open for three devices; the store is down for the first batch write
    store, service, broker, rnd = open_round(backend)
    service._backoff.base_s = 0.01  # noqa: SLF001 - keep the test fast
    mids = [
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
        for cid in CLIENTS
    ]
    real = store.record_updates
    down = {"left": 1}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if down["left"]:
            down["left"] -= 1
            raise StoreUnavailableError(backend.url, "connection refused")
        return real(*args, **kwargs)

    store.record_updates = flaky  # type: ignore[method-assign]
    # Execute
    with pytest.raises(StoreUnavailableError):
        service.step()
    acked_during_outage = set(broker.acked) & set(mids)
    service.step()
    # Assert: nothing acknowledged while the store was down; all three stored once afterwards
    assert acked_during_outage == set()
    assert set(mids) <= set(broker.acked)
    assert store.count_updates(rnd.round_id) == 3


@pytest.mark.parametrize("on_chunk_topic", [True, False])
def test_a_split_update_is_reassembled_on_either_topic(
    backend: Backend, on_chunk_topic: bool
) -> None:
    # Prepare: devices before 2026-11-28 sent the chunks of a split update on the whole-update
    # topic; the batched intake took those for whole updates and refused every chunk
    store, service, broker, rnd = open_round(backend)
    whole = update_payload(rnd, "dev-1")
    chunks = fl.split_message(whole, "u-dev-1", 64)
    topic = (proto.chunk_topic if on_chunk_topic else proto.client_topic)(
        proto.Channel.UPDATE, "dev-1"
    )
    # Execute: reversed, one chunk twice
    for part in [*reversed(chunks), chunks[0]]:
        broker.put(topic, part)
    drain(service, broker)
    # Assert
    assert len(chunks) > 2
    assert [u.client_id for u in store.list_updates(rnd.round_id, include_blobs=False)] == ["dev-1"]
    assert service.rejects.counts.get("schema", 0) == 0
