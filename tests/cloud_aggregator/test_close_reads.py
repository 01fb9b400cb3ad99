"""Closing a round reuses the intake's decoded updates and reads blobs back only when needed;
the aggregator process settles its heap before serving."""

from __future__ import annotations

import dataclasses
import queue
import subprocess
import sys
import time
from typing import Any

from cloud_aggregator.mqtt_io import Inbound
from cloud_aggregator.service import AggregatorService
from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Status, encode_status
from store import RoundState, Store
from tests.cloud_aggregator.service_support import (
    CLIENTS,
    FakeBroker,
    drain,
    open_round,
    update_payload,
)
from tests.store.conftest import Backend


def _spy_blob_reads(store: Store) -> list[bool]:
    """Record ``include_blobs`` of every ``list_updates`` call."""
    calls: list[bool] = []
    real = store.list_updates

    def spy(round_id: int, *, include_blobs: bool = True) -> Any:
        calls.append(include_blobs)
        return real(round_id, include_blobs=include_blobs)

    store.list_updates = spy  # type: ignore[method-assign]
    return calls


def test_a_round_whose_updates_were_all_decoded_here_reads_no_blob(backend: Backend) -> None:
    # Prepare: the three invited devices send their updates through this service
    store, service, broker, rnd = open_round(backend)
    for cid in CLIENTS:
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    calls = _spy_blob_reads(store)
    # Execute
    drain(service, broker)
    service.advance()
    # Assert: closed from the kept updates, not read back (the digests only)
    assert store.get_round(rnd.round_id).state == RoundState.CLOSED
    assert store.round_metrics(rnd.round_id)["received"] == 3.0
    assert calls == []


def test_an_update_another_replica_stored_is_read_back_and_counted(backend: Backend) -> None:
    # Prepare: dev-3's update reaches the store through another replica (not decoded here)
    store, service, broker, rnd = open_round(backend)
    for cid in CLIENTS[:2]:
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    drain(service, broker)
    other = update_payload(rnd, CLIENTS[2], value=0.04)
    u = fl.decode_update(other)
    store.record_update(round_id=rnd.round_id, client_id=u.client_id, update_id=u.update_id,
                        blob=other, n_samples=u.n_examples, metrics={})  # fmt: skip
    calls = _spy_blob_reads(store)
    # Execute
    service.advance()
    # Assert: the blobs were read once and dev-3's delta is in the mean
    assert calls.count(True) == 1
    assert store.get_round(rnd.round_id).state == RoundState.CLOSED
    assert store.round_metrics(rnd.round_id)["received"] == 3.0


def test_settle_heap_freezes_the_start_up_heap_and_raises_the_first_threshold() -> None:
    # Execute: in its own interpreter (it changes the process's collector for good)
    code = (
        "import gc; from cloud_aggregator.service import settle_heap; before = gc.get_threshold();"
        " settle_heap(); print(gc.get_freeze_count(), *gc.get_threshold(), *before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    frozen, g0, g1, g2, b0, b1, b2 = map(int, out.stdout.split())
    # Assert
    assert frozen > 1000 and (g0, g1, g2) == (10_000, max(b1, 20), max(b2, 20))


class BlockingBroker(FakeBroker):
    """A broker whose ``get`` waits its whole timeout when nothing comes (as paho's inbox)."""

    def get(self, timeout_s: float) -> Inbound | None:
        try:
            return self.inbound.get(timeout=timeout_s)
        except queue.Empty:
            return None


def _long_poll(service: AggregatorService, broker: FakeBroker) -> BlockingBroker:
    """The service with a 5 s poll on a blocking broker holding what ``broker`` held."""
    blocking = BlockingBroker()
    blocking.inbound, blocking._mid = broker.inbound, broker._mid  # noqa: SLF001
    service.broker = blocking  # type: ignore[assignment]
    service.s = dataclasses.replace(service.s, poll_s=5.0)
    return blocking


def test_the_update_that_completes_a_round_closes_it_without_waiting_out_the_poll(
    backend: Backend,
) -> None:
    # Prepare: a 5 s poll; every invited device's update, then a status report behind them
    store, service, broker, rnd = open_round(backend)
    blocking = _long_poll(service, broker)
    for cid in CLIENTS:
        blocking.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    blocking.put(proto.client_topic(proto.Channel.STATUS, "dev-1"),
                 encode_status(Status("dev-1", True, 2_000)))  # fmt: skip
    # Execute
    t0 = time.monotonic()
    service.step()
    # Assert: closed in this step, which stopped gathering at the last update (the status is
    # still queued) instead of waiting out its 5 s poll
    assert store.get_round(rnd.round_id).state == RoundState.CLOSED
    assert blocking.inbound.qsize() == 1 and time.monotonic() - t0 < 2.5


def test_a_resent_update_does_not_count_as_another_device(backend: Backend) -> None:
    # Prepare: dev-1 twice and dev-2 (dev-3 still to come), then a status report
    store, service, broker, rnd = open_round(backend)
    for cid in ("dev-1", "dev-1", "dev-2"):
        broker.put(proto.client_topic(proto.Channel.UPDATE, cid), update_payload(rnd, cid))
    broker.put(proto.client_topic(proto.Channel.STATUS, "dev-1"),
               encode_status(Status("dev-1", True, 2_000)))  # fmt: skip
    # Execute
    service.step()
    # Assert: no early stop (everything drained), the round still waits for dev-3
    assert broker.inbound.qsize() == 0
    assert store.get_round(rnd.round_id).state == RoundState.OPEN
    assert store.count_updates(rnd.round_id) == 2
