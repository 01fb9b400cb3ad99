"""``medchain simulate``: MIT-BIH patients as edge clients of the round engine.

Each record becomes one client (``mitdb-<record>``) whose labelled beats are written, for the
run only, to an npz (:func:`write_client_npz`). The aggregator's service and round engine run in
this process on a grid: over a real broker (:func:`run_over_broker`: the clients run in a child
process, ``python -m edge_agent.federated``, each with its own MQTT connection, random
drop-outs and slow clients; the aggregator package never imports the edge package) or in memory
(:func:`drive`, with an :class:`~cloud_aggregator.grid_memory.InMemoryGrid` built by
:mod:`medchain.simulation`). Both drive the same engine with the same loop and report the same
summary (:func:`summary`, its fields documented in docs/federated.md, "simulate --json").
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.evaluation import validation_evaluator
from cloud_aggregator.grid import Grid
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.service import AggregatorService, subscriptions
from cloud_aggregator.simulate_fleet import Fleet
from common.errors import ConfigError
from store import DesiredTraining, Store

_LOGGER = logging.getLogger(__name__)

Progress = Callable[[list[dict[str, Any]]], None]


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
        Probability of a slow client and its extra delay, s (broker path).
    eval_records : tuple of str
        Held-out records for the per-round server-side evaluation (empty = none).
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
    records: Sequence[str], folder: Path, env: Mapping[str, str], cache: Path | None
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


def start_run(store: Store, settings: AggregatorSettings, plan: SimulationPlan) -> None:
    """Ask for the plan's run (what the web's "start training" writes)."""
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


def drive(
    service: AggregatorService,
    store: Store,
    plan: SimulationPlan,
    progress: Progress | None = None,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Step the service until the run stops (or ``plan.max_seconds``); returns the seconds."""
    t0, seen = time.monotonic(), 0
    while time.monotonic() - t0 < plan.max_seconds:
        service.step()
        if len(service.history) > seen and progress is not None:
            progress(service.history[seen:])
        seen = len(service.history)
        if store.get_training_control().desired == DesiredTraining.STOPPED:
            break
        if not alive():
            raise ConfigError("the simulated devices stopped before the run ended")
    return time.monotonic() - t0


def attach_evaluator(
    service: AggregatorService,
    plan: SimulationPlan,
    env: Mapping[str, str],
    cache: Path | None,
    evaluator: Any = None,
) -> None:
    """The server-side evaluator: ``evaluator`` when given (e.g. the rhythm task's), else the
    beat evaluator on ``plan.eval_records`` (none when empty)."""
    if evaluator is not None:
        service.evaluator = evaluator
    elif plan.eval_records:
        rel, _ = service.release(service.ensure_initial_model())
        service.evaluator = validation_evaluator(
            ",".join(plan.eval_records), rel.files["model.onnx"], env, cache
        )


def summary(
    service: AggregatorService,
    plan: SimulationPlan,
    counts: Mapping[str, int],
    wall_s: float,
    uplink_bytes_per_update: float,
    downlink_bytes_per_round: float | None = None,
) -> dict[str, Any]:
    """The JSON summary of a simulation (fields documented in docs/federated.md)."""
    history = service.history
    closed = [h for h in history if h["state"] == "closed"]
    durations = [h["round_s"] for h in closed if isinstance(h.get("round_s"), (int, float))]
    return {
        "clients": len(plan.records),
        "beats_per_client": dict(counts),
        "rounds_requested": plan.rounds,
        "rounds_closed": len(closed),
        "rounds_failed": sum(1 for h in history if h["state"] == "failed"),
        "strategy": plan.strategy,
        "drop": plan.drop,
        "slow": plan.slow,
        "round_s_median": statistics.median(durations) if durations else None,
        "rounds": history,
        "final": closed[-1] if closed else None,
        "uplink_bytes_per_client_round": uplink_bytes_per_update,
        "downlink_bytes_per_round": downlink_bytes_per_round,
        "rejects": service.rejects.as_dict(),
        "wall_s": wall_s,
    }


def run_over_broker(
    store: Store,
    settings: AggregatorSettings,
    plan: SimulationPlan,
    env: Mapping[str, str],
    data_dir: Path,
    work_dir: Path,
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    distiller: Any = None,
    builder: Any = None,
    evaluator: Any = None,
) -> dict[str, Any]:
    """The plan over the broker of ``settings``: clients in child processes
    (:class:`~cloud_aggregator.simulate_fleet.Fleet`), one MQTT connection each. The npz files must be in ``data_dir`` (:func:`write_client_npz`)."""
    service: AggregatorService | None = None
    broker = PahoBroker(
        settings.broker_url,
        settings.worker_name,
        subscriptions(settings.shared_group),
        on_reconnect=lambda: service.republish.set() if service else None,
    )
    broker.start(10.0)
    service = AggregatorService(store, broker, settings, distiller=distiller, builder=builder)
    counts = {p.stem: int(np.load(p)["labels"].shape[0]) for p in sorted(data_dir.glob("*.npz"))}
    attach_evaluator(service, plan, env, cache, evaluator)
    fleet = Fleet(settings.broker_url, data_dir, work_dir, len(counts), plan.max_seconds,
                  (plan.drop, plan.slow, plan.slow_s))  # fmt: skip
    try:
        _wait_online(service, set(counts))
        start_run(store, settings, plan)
        wall = drive(service, store, plan, progress, alive=fleet.alive)
    finally:
        fleet.stop()
        broker.stop()
    fleet_stats = fleet.stats()
    trained = sum(int(v["rounds_trained"]) for v in fleet_stats.values()) or 1
    up = sum(int(v["uplink_bytes"]) for v in fleet_stats.values()) / trained
    return summary(service, plan, counts, wall, up)


def _wait_online(service: AggregatorService, ids: set[str], timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s and sum(
        service.online.get(c, False) for c in ids
    ) < len(ids):
        service.step()  # statuses only: training is not running yet
    _LOGGER.info(
        "%d of %d clients online", sum(service.online.get(c, False) for c in ids), len(ids)
    )


def run_on_grid(
    store: Store,
    settings: AggregatorSettings,
    plan: SimulationPlan,
    grid: Grid,
    counts: Mapping[str, int],
    env: Mapping[str, str],
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    distiller: Any = None,
    builder: Any = None,
    uplink: Callable[[], float] = lambda: 0.0,
    downlink: Callable[[], float | None] = lambda: None,
    evaluator: Any = None,
) -> dict[str, Any]:
    """The plan on an in-process grid whose devices are already attached (all online)."""
    service = AggregatorService(store, grid, settings, distiller=distiller, builder=builder)
    attach_evaluator(service, plan, env, cache, evaluator)
    service.step()  # the devices' online statuses
    start_run(store, settings, plan)
    wall = drive(service, store, plan, progress)
    return summary(service, plan, counts, wall, uplink(), downlink())
