"""Update batches stored on a writer thread while the next one is screened (service.run), on
both store backends: every update stored once and acknowledged once, never before its commit,
also when the store fails under the writer."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cloud_aggregator import service as service_module
from cloud_aggregator.mqtt_io import Inbound
from cloud_aggregator.service import AggregatorService
from cloud_aggregator.update_writer import BatchWriter, FailedBatch
from common import protocol as proto
from store import Store, StoreUnavailableError
from tests.cloud_aggregator.service_support import (
    CLIENTS,
    FakeBroker,
    open_round,
    update_payload,
)
from tests.store.conftest import Backend


# ---------------------------------------------------------------------- the writer alone
def test_writer_runs_one_batch_at_a_time_and_returns_a_failed_one() -> None:
    # Prepare
    writer: BatchWriter[str] = BatchWriter()
    done: list[str] = []

    def boom() -> None:
        raise ValueError("bad batch")

    # Execute / Assert: a batch that works is collected as None
    writer.submit(lambda: done.append(threading.current_thread().name), ["m1"])
    assert writer.busy
    with pytest.raises(RuntimeError, match="in flight"):
        writer.submit(lambda: None, ["m2"])
    assert writer.wait() is None and not writer.busy
    assert done[0].startswith("update-writer")  # not the caller's thread
    # Execute / Assert: a failed batch comes back with its messages and error
    writer.submit(boom, ["m3", "m4"])
    failed = writer.wait()
    assert isinstance(failed, FailedBatch) and list(failed.messages) == ["m3", "m4"]
    assert isinstance(failed.error, ValueError)
    assert writer.close() is None and writer.close() is None  # idempotent
    assert writer.wait() is None


# ---------------------------------------------------------------------- the service's run()
class CommitCheckingBroker(FakeBroker):
    """Records, for every acknowledged update, whether its sender's update was committed."""

    def __init__(self, store: Store, round_id: int) -> None:
        super().__init__()
        self.store, self.round_id = store, round_id
        self.senders: dict[int, str] = {}
        self.stored_at_ack: dict[int, bool] = {}

    def put_update(self, cid: str, payload: bytes) -> int:
        mid = self.put(proto.client_topic(proto.Channel.UPDATE, cid), payload)
        self.senders[mid] = cid
        return mid

    def ack(self, msg: Inbound) -> None:
        if msg.mid in self.senders:  # read on the acking thread, right now
            stored = {
                u.client_id for u in self.store.list_updates(self.round_id, include_blobs=False)
            }
            self.stored_at_ack[msg.mid] = self.senders[msg.mid] in stored
        super().ack(msg)


def _run_until_acked(service: AggregatorService, broker: FakeBroker, mids: list[int]) -> None:
    """service.run() on a thread until every mid is acknowledged (at most 20 s)."""
    stop = threading.Event()
    t = threading.Thread(target=service.run, args=(stop,), kwargs={"max_seconds": 20})
    t.start()
    deadline = time.monotonic() + 20
    while not set(mids) <= set(broker.acked) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(10)
    assert not t.is_alive()


def _service_with_updates(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, AggregatorService, CommitCheckingBroker, int, list[int]]:
    """A round open for the three devices, each update queued as a batch of its own (so
    batches overlap: one stored while the next is screened)."""
    store, service, fake, rnd = open_round(backend)
    broker = CommitCheckingBroker(store, rnd.round_id)
    broker._mid = 100  # noqa: SLF001 - ids apart from the statuses' ones
    service.broker = broker  # type: ignore[assignment]
    service._backoff.base_s = 0.01  # noqa: SLF001 - keep the test fast
    monkeypatch.setattr(service_module, "BATCH_MAX", 1)
    mids = [broker.put_update(cid, update_payload(rnd, cid)) for cid in CLIENTS]
    return store, service, broker, rnd.round_id, mids


def test_run_acknowledges_each_update_once_after_its_commit(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    store, service, broker, rid, mids = _service_with_updates(backend, monkeypatch)
    # Execute
    _run_until_acked(service, broker, mids)
    # Assert: stored once each, acknowledged once each, every ack after the commit
    assert store.count_updates(rid) == len(CLIENTS)
    assert sorted(m for m in broker.acked if m in mids) == mids
    assert broker.stored_at_ack == dict.fromkeys(mids, True)
    assert service._writer is None  # noqa: SLF001 - run() ended its writer thread


@pytest.mark.parametrize("error", ["outage", "bug"])
def test_a_batch_failing_on_the_writer_is_handled_again(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    # Prepare: the first batch write fails on the writer thread (store down, or a bug)
    store, service, broker, rid, mids = _service_with_updates(backend, monkeypatch)
    real = store.record_updates
    left = {"n": 1}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if left["n"]:
            left["n"] -= 1
            if error == "outage":
                raise StoreUnavailableError(backend.url, "connection refused")
            raise RuntimeError("a bug in the batch path")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "record_updates", flaky)
    # Execute
    _run_until_acked(service, broker, mids)
    # Assert: the failed batch was not acknowledged, then stored once and acknowledged once
    assert left["n"] == 0
    assert store.count_updates(rid) == len(CLIENTS)
    assert sorted(m for m in broker.acked if m in mids) == mids
    assert broker.stored_at_ack == dict.fromkeys(mids, True)


class AckFailingBroker(CommitCheckingBroker):
    """Its acknowledgement of the second message it is asked for fails once (the connection
    dropped between two acks)."""

    def __init__(self, store: Store, round_id: int) -> None:
        super().__init__(store, round_id)
        self.calls = 0

    def ack(self, msg: Inbound) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("broker connection lost")
        super().ack(msg)


def test_a_batch_whose_acks_fail_half_way_acknowledges_no_message_twice(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the three updates in one batch; the second ack fails after the commit
    store, service, _fake, rnd = open_round(backend)
    broker = AckFailingBroker(store, rnd.round_id)
    broker._mid = 100  # noqa: SLF001 - ids apart from the statuses' ones
    service.broker = broker  # type: ignore[assignment]
    service._backoff.base_s = 0.01  # noqa: SLF001 - keep the test fast
    mids = [broker.put_update(cid, update_payload(rnd, cid)) for cid in CLIENTS]
    # Execute
    _run_until_acked(service, broker, mids)
    # Assert: stored once each; each acknowledged exactly once (a second ack of an MQTT packet
    # id may acknowledge a newer message the broker sent under the same id, before its commit)
    assert broker.calls >= 4
    assert store.count_updates(rnd.round_id) == len(CLIENTS)
    assert sorted(m for m in broker.acked if m in mids) == mids
    assert broker.stored_at_ack == dict.fromkeys(mids, True)
