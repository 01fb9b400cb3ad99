"""``medchain simulate``: MIT-BIH patients as edge clients against a real broker and store.

Each record becomes one client (``mitdb-<record>``) whose labelled beats are written, for the
run only, to a temporary npz; the clients run in a child process
(``python -m edge_agent.federated``; the aggregator package never imports the edge package),
each with its own MQTT connection, random drop-outs and slow clients. The aggregator runs in
this process; per-round metrics come from the store and an optional held-out evaluation split.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.evaluation import validation_evaluator
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.service import AggregatorService, subscriptions
from common.errors import ConfigError
from store import DesiredTraining, Store

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationPlan:
    """What to simulate.

    Attributes
    ----------
    records : tuple of str
        MIT-BIH records, one client each.
    rounds : int
        Rounds to run.
    strategy : str
        Aggregation strategy name.
    client_config : dict
        Round/client settings written to the training control (deadline_s, fraction, lr...).
    drop : float
        Per-round drop-out probability of a selected client.
    slow, slow_s : float
        Probability of a slow client and its extra delay, s.
    eval_records : tuple of str
        Held-out records for the per-round evaluation (empty = none).
    max_seconds : float
        Wall-clock limit of the whole simulation, s.
    """

    records: tuple[str, ...]
    rounds: int
    strategy: str = "fedavg"
    client_config: Mapping[str, Any] | None = None
    drop: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.0
    eval_records: tuple[str, ...] = ()
    max_seconds: float = 1800.0


def resolve_records(spec: str) -> tuple[str, ...]:
    """``ds1`` / ``ds2`` / ``101,106,...`` -> record names."""
    from models.data.mitdb import DS1, DS2

    named = {"ds1": DS1, "ds2": DS2}
    if spec.lower() in named:
        return tuple(named[spec.lower()])
    recs = tuple(r.strip() for r in spec.split(",") if r.strip())
    unknown = [r for r in recs if r not in (*DS1, *DS2)]
    if not recs or unknown:
        raise ConfigError(f"unknown MIT-BIH records {unknown or spec!r}: use ds1, ds2 or a list")
    return recs


def write_client_npz(
    records: Sequence[str],
    folder: Path,
    env: Mapping[str, str],
    cache: Path | None,
) -> dict[str, int]:
    """One ``mitdb-<record>.npz`` (``beat``, ``rr``, ``labels``) per record; returns beat counts."""
    from models.tasks.base import LoadOptions
    from models.tasks.beat import load_records

    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for rec in records:
        data = load_records([rec], LoadOptions(env=env, cache_dir=cache))
        np.savez(
            folder / f"mitdb-{rec}.npz",
            beat=data.signal,  # all channels: the device's embedder feeds what its model expects
            rr=data.features,
            labels=data.labels,
        )
        counts[f"mitdb-{rec}"] = len(data)
    return counts


def run_simulation(
    store: Store,
    settings: AggregatorSettings,
    plan: SimulationPlan,
    env: Mapping[str, str],
    *,
    cache: Path | None = None,
    progress: Any = None,
    distiller: Any = None,
) -> dict[str, Any]:
    """Run the plan; returns the JSON-compatible summary (per-round metrics, uplink bytes)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medchain-sim-") as tmp:
        data_dir = Path(tmp) / "data"
        service: AggregatorService | None = None
        broker = PahoBroker(
            settings.broker_url,
            settings.worker_name,
            subscriptions(settings.shared_group),
            on_reconnect=lambda: service.republish.set() if service else None,
        )
        broker.start(10.0)
        service = AggregatorService(store, broker, settings, distiller=distiller)
        base = service.ensure_initial_model()
        counts = write_client_npz(plan.records, data_dir, env, cache)
        if plan.eval_records:
            rel, _ = service.release(base)
            service.evaluator = validation_evaluator(
                ",".join(plan.eval_records), rel.files["model.onnx"], env, cache
            )
        stats_file = Path(tmp) / "fleet.json"
        cmd = [
            sys.executable,
            "-m",
            "edge_agent.federated",
            "--broker",
            settings.broker_url,
            "--data",
            str(data_dir),
            "--work",
            str(Path(tmp) / "work"),
            "--seconds",
            str(plan.max_seconds),
            "--drop",
            str(plan.drop),
            "--slow",
            str(plan.slow),
            "--slow-s",
            str(plan.slow_s),
            "--stats",
            str(stats_file),
        ]
        fleet = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})  # noqa: S603
        ids = set(counts)
        t_wait = time.monotonic()
        while time.monotonic() - t_wait < 60 and sum(
            service.online.get(c, False) for c in ids
        ) < len(ids):
            service.step()  # statuses only: training is not running yet
        _LOGGER.info(
            "%d of %d clients online", sum(service.online.get(c, False) for c in ids), len(ids)
        )
        cfg = dict(plan.client_config or {})
        cfg.setdefault("min_clients", max(1, len(plan.records) // 2))
        store.set_training_control(
            desired=DesiredTraining.RUNNING,
            task=settings.task,
            strategy=plan.strategy,
            dataset="mitdb",
            rounds=plan.rounds,
            config=cfg,
            updated_by="simulate",
        )
        stop = threading.Event()
        seen = 0
        try:
            while time.monotonic() - t0 < plan.max_seconds:
                service.step()
                if len(service.history) > seen and progress is not None:
                    progress(service.history[seen:])
                seen = len(service.history)
                if store.get_training_control().desired == DesiredTraining.STOPPED:
                    break
                if fleet.poll() is not None:
                    raise ConfigError(f"the client fleet exited early with code {fleet.returncode}")
        finally:
            stop.set()
            fleet.send_signal(signal.SIGTERM)
            try:
                fleet.wait(30)
            except subprocess.TimeoutExpired:
                fleet.kill()
                fleet.wait(10)
            broker.stop()
        fleet_stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    closed = [h for h in service.history if h["state"] == "closed"]
    trained = sum(int(v["rounds_trained"]) for v in fleet_stats.values()) or 1
    return {
        "clients": len(plan.records),
        "beats_per_client": counts,
        "rounds_requested": plan.rounds,
        "rounds_closed": len(closed),
        "rounds_failed": sum(1 for h in service.history if h["state"] == "failed"),
        "strategy": plan.strategy,
        "drop": plan.drop,
        "slow": plan.slow,
        "rounds": service.history,
        "final": closed[-1] if closed else None,
        "uplink_bytes_per_client_round": sum(int(v["uplink_bytes"]) for v in fleet_stats.values())
        / trained,
        "rejects": service.rejects.as_dict(),
        "wall_s": time.monotonic() - t0,
    }
