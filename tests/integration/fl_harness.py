"""Harness of the federated-learning integration tests: aggregator + clients in threads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
from cloud_aggregator.service import AggregatorService, subscriptions
from edge_agent.federated import FederatedParticipant, NpzExamples, run_client
from store import DesiredTraining, Store
from tests.cloud_aggregator.fl_support import initial_release, write_client_data


def seed_store(store: Store, rounds: int, **config: Any) -> None:
    """Put the tiny initial model in the store and ask for ``rounds`` rounds."""
    store.put_model(stored_blob(initial_release(), {}), format=RELEASE_FORMAT)
    cfg = {
        "deadline_s": 8.0,
        "min_clients": 2,
        "quorum_fraction": 0.5,
        "local_epochs": 2,
        "lr": 0.05,
    }
    cfg.update(config)
    store.set_training_control(
        desired=DesiredTraining.RUNNING,
        task="beat",
        strategy=str(cfg.pop("strategy", "fedavg")),
        rounds=rounds,
        config=cfg,
        updated_by="test",
    )


@contextlib.contextmanager
def aggregator(store: Store, url: str, **settings: Any) -> Iterator[AggregatorService]:
    """A running aggregator service thread."""
    worker = settings.pop("worker_override", "agg-test")
    s = AggregatorSettings(broker_url=url, worker=worker, poll_s=0.1, **settings)
    service: AggregatorService | None = None
    broker = PahoBroker(
        url,
        s.worker_name,
        subscriptions(s.shared_group),
        on_reconnect=lambda: service.republish.set() if service else None,
    )
    broker.start(10.0)
    service = AggregatorService(store, broker, s)
    stop = threading.Event()
    t = threading.Thread(target=_run_quietly, args=(service, stop), daemon=True)
    t.start()
    try:
        yield service
    finally:
        stop.set()
        t.join(10)
        broker.stop()


def _run_quietly(service: AggregatorService, stop: threading.Event) -> None:
    """Run until stopped; a simulated crash (BaseException) just ends the thread."""
    try:
        service.run(stop)
    except BaseException as exc:  # noqa: BLE001 - the crash under test
        if type(exc).__name__ != "Crash":
            raise


@dataclass
class Fleet:
    participants: list[FederatedParticipant]
    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)


@contextlib.contextmanager
def fleet(url: str, tmp: Path, n: int, **opts: Any) -> Iterator[Fleet]:
    """``n`` simulated clients, each in its own thread with its own MQTT connection.

    ``slow_prob`` may be a sequence, one per client (e.g. ``(0, 0, 1)``: the last one always
    late, so every round has a stretch with some updates in and one still to come).
    """
    ids = write_client_data(tmp / "data", n)
    stop = threading.Event()
    part_opts = {k: opts.pop(k) for k in ("chunk_bytes",) if k in opts}
    f = Fleet(
        [
            FederatedParticipant(
                cid, NpzExamples(tmp / "data" / f"{cid}.npz"), tmp / "work" / cid, **part_opts
            )
            for cid in ids
        ],
        stop,
    )
    slow = opts.pop("slow_prob", 0.0)
    per_client = list(slow) if isinstance(slow, (list, tuple)) else [slow] * n
    for i, p in enumerate(f.participants):
        kwargs = {**opts, "seed": i, "slow_prob": per_client[i]}
        t = threading.Thread(target=run_client, args=(url, p, stop), kwargs=kwargs, daemon=True)
        t.start()
        f.threads.append(t)
    try:
        yield f
    finally:
        stop.set()
        for t in f.threads:
            t.join(10)


def wait_for(cond: Any, timeout: float, what: str) -> None:
    """Poll ``cond()`` every 0.1 s; fail with ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
