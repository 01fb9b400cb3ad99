"""A service under test: the aggregator with a fake broker on a real store (both backends)."""

from __future__ import annotations

import queue
from typing import Any

import numpy as np

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.mqtt_io import Inbound
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
from cloud_aggregator.service import AggregatorService
from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Status, encode_status
from store import DesiredTraining, Round, RoundState, Store
from tests.cloud_aggregator.fl_support import initial_release
from tests.store.conftest import Backend

CLIENTS = ("dev-1", "dev-2", "dev-3")


class FakeBroker:
    """The broker port of the service: a queue in, acks and publishes recorded."""

    def __init__(self) -> None:
        self.inbound: queue.Queue[Inbound] = queue.Queue()
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self._mid = 0

    def put(self, topic: str, payload: bytes) -> int:
        self._mid += 1
        self.inbound.put(Inbound(topic, payload, self._mid, 1, False))
        return self._mid

    def get(self, timeout_s: float) -> Inbound | None:
        try:
            return self.inbound.get(timeout=min(timeout_s, 0.01))
        except queue.Empty:
            return None

    def ack(self, msg: Inbound) -> None:
        self.acked.append(msg.mid)

    def publish(self, topic: str, payload: bytes, **_: Any) -> bool:
        self.published.append((topic, payload))
        return True


def seeded(backend: Backend) -> Store:
    store = backend.open()
    store.put_model(stored_blob(initial_release(), {}), format=RELEASE_FORMAT)
    store.set_training_control(desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg",
                               rounds=3, config={"deadline_s": 60.0, "min_clients": 2},
                               updated_by="test")  # fmt: skip
    return store


def service_on(
    store: Store, backend: Backend, seed: int | None = None
) -> tuple[AggregatorService, FakeBroker]:
    broker = FakeBroker()
    s = AggregatorSettings(worker="agg-test", poll_s=0.05, seed=seed)
    return AggregatorService(store, broker, s, clock=backend.clock), broker  # type: ignore[arg-type]


def online(broker: FakeBroker) -> None:
    for cid in CLIENTS:
        broker.put(proto.client_topic(proto.Channel.STATUS, cid),
                   encode_status(Status(cid, True, 1_000)))  # fmt: skip


def drain(service: AggregatorService, broker: FakeBroker) -> None:
    while not broker.inbound.empty():
        service.step()


def open_round(
    backend: Backend, *, evaluator: Any = None
) -> tuple[Store, AggregatorService, FakeBroker, Round]:
    """A seeded store, its service, the three devices online and the round it opened."""
    store = seeded(backend)
    service, broker = service_on(store, backend)
    if evaluator is not None:
        service.evaluator = evaluator
    online(broker)
    drain(service, broker)
    service.advance()
    rnd = store.active_round("beat")
    assert rnd is not None and rnd.state == RoundState.OPEN
    return store, service, broker, rnd


def update_payload(rnd: Round, cid: str, value: float = 0.01) -> bytes:
    """An uncompressed update of ``cid`` for ``rnd``: every weight of the release moved by
    ``value``."""
    shapes = {k: v.shape for k, v in initial_release().tensors.items()}
    delta = {k: np.full(s, value, np.float32) for k, s in shapes.items()}
    return fl.encode_update(fl.ClientUpdate(str(rnd.round_id), cid, "v1", 100, delta, "none"))
