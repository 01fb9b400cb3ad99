"""``medchain simulate``: MIT-BIH patients as devices of the round engine, over a broker or in
memory.

Wiring only (this package may import both the edge and the aggregator): each record becomes a
device with its labelled beats; ``--grid mqtt`` runs them in a child process over the real
broker of ``--broker`` (:func:`cloud_aggregator.simulate.run_over_broker`), ``--grid memory``
as :class:`edge_agent.federated.FederatedParticipant` objects on an
:class:`cloud_aggregator.grid_memory.InMemoryGrid` in this process. The aggregator's service and
round engine are the production ones either way; the JSON summary is documented in
docs/federated.md ("simulate --json").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_LOGGER_NAME = __name__


def memory_devices(
    data_dir: Path, work_dir: Path, head_only: frozenset[str] = frozenset()
) -> list[Any]:
    """One transport-free participant per ``*.npz`` of labelled beats in ``data_dir``; those
    named in ``head_only`` act as devices without torch (they train the head in every round)."""
    from edge_agent.federated import FederatedParticipant, NpzExamples

    return [
        FederatedParticipant(
            p.stem,
            NpzExamples(p),
            work_dir / p.stem,
            personalise=False,
            full_trainer=p.stem not in head_only,
        )
        for p in sorted(data_dir.glob("*.npz"))
    ]


def run_in_memory(
    store: Any,
    settings: Any,
    plan: Any,
    env: Mapping[str, str],
    data_dir: Path,
    work_dir: Path,
    *,
    seed: int = 0,
    cache: Path | None = None,
    progress: Any = None,
    distiller: Any = None,
    builder: Any = None,
    evaluator: Any = None,
) -> dict[str, Any]:
    """The plan with every device in this process (see the module docstring)."""
    import numpy as np

    from cloud_aggregator.grid_memory import InMemoryGrid
    from cloud_aggregator.simulate import run_on_grid

    devices = memory_devices(data_dir, work_dir)
    counts = {p.stem: int(np.load(p)["labels"].shape[0]) for p in sorted(data_dir.glob("*.npz"))}
    grid = InMemoryGrid(devices, drop=plan.drop, seed=seed)

    def uplink() -> float:
        trained = sum(d.stats.rounds_trained for d in devices) or 1
        return float(sum(d.stats.uplink_bytes for d in devices)) / trained

    def downlink() -> float | None:
        rounds = grid.stats.per_round_down
        return float(np.mean(list(rounds.values()))) if rounds else None

    return run_on_grid(
        store,
        settings,
        plan,
        grid,
        counts,
        env,
        cache=cache,
        progress=progress,
        distiller=distiller,
        builder=builder,
        uplink=uplink,
        downlink=downlink,
        evaluator=evaluator,
    )


def _simulate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.console import Console

    from cloud_aggregator.cli import _settings
    from cloud_aggregator.simulate import (
        SimulationPlan,
        resolve_records,
        run_over_broker,
        write_client_npz,
    )
    from common.datasets import default_cache_dir
    from common.errors import ConfigError
    from store import open_store

    rhythm = args.task == "rhythm"
    if rhythm and args.mode != "full":
        raise ConfigError("--task rhythm trains the whole network from a random start: --mode full")
    # reproducible draws and noise; the rounds are stored under the task's name
    s = dataclasses.replace(_settings(args, env), seed=args.seed, task=args.task)
    plan = SimulationPlan(
        records=() if rhythm else resolve_records(args.clients),
        rounds=args.rounds,
        strategy=args.strategy,
        client_config={"deadline_s": s.deadline_s, "mode": args.mode, **_client_config(args)},
        drop=args.drop,
        slow=args.slow,
        slow_s=args.slow_s,
        eval_records=resolve_records(args.eval) if args.eval and not rhythm else (),
        max_seconds=args.max_seconds,
    )
    console = Console(stderr=True)
    cache = default_cache_dir(env) / ("preprocessed" if rhythm else "beat-cache")
    store = open_store(s.store_url)
    try:
        with tempfile.TemporaryDirectory(prefix="medchain-sim-") as tmp:
            data_dir, work_dir = Path(tmp) / "data", Path(tmp) / "work"
            kw: dict[str, Any] = {"cache": cache, "progress": _printer(console, plan.rounds)}
            if rhythm:
                from medchain.simulation_rhythm import prepare

                run = prepare(
                    store,
                    args.clients,
                    args.eval_fold,
                    args.eval_max,
                    args.seed,
                    args.central,
                    args.pretrain_epochs,
                    env,
                    cache,
                    data_dir,
                )
                plan = dataclasses.replace(plan, records=run.clients)
                kw |= {"builder": run.builder, "evaluator": run.evaluator}
            else:
                write_client_npz(plan.records, data_dir, env, cache)
                kw |= {
                    "distiller": _distiller(s, args, env),
                    "builder": _whole_model(store, args, env, cache),
                }
            if args.grid == "memory":
                result = run_in_memory(
                    store, s, plan, env, data_dir, work_dir, seed=args.seed, **kw
                )
            else:
                result = run_over_broker(store, s, plan, env, data_dir, work_dir, **kw)
            if rhythm:
                result["initial"] = run.initial
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        console.print(
            f"{result['rounds_closed']} rounds closed, {result['rounds_failed']} failed;"
            f" final: {result['final']}"
        )
    return 0 if result["rounds_closed"] == plan.rounds else 1


def _client_config(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs; for the rhythm task on top of its recipe (``simulation_rhythm.RECIPE``)."""
    from cloud_aggregator.cli import _kv

    overrides = _kv(args.set)
    if args.task != "rhythm":
        return overrides
    from medchain.simulation_rhythm import client_config

    return client_config(overrides, args.strategy, args.central)


def _printer(console: Any, total: int) -> Any:
    def progress(entries: Sequence[dict[str, Any]]) -> None:
        for h in entries:
            f1 = h.get("macro_f1")
            console.print(
                f"[ROUND {h.get('round_no')}/{total}] {h['state']} received={h.get('received', '-')}"
                f" failures={h.get('failures', '-')} rejected={h.get('rejected', '-')}"
                + (f" macro_f1={f1:.4f}" if isinstance(f1, float) else "")
            )

    return progress


def _whole_model(store: Any, args: argparse.Namespace, env: Mapping[str, str], cache: Path) -> Any:
    """With ``--mode full``: a random student as version 1 of an empty store, and the builder of
    the next releases (int8 calibration on ``--calibration`` records); None in head mode."""
    if args.mode != "full":
        return None
    from cloud_aggregator.full_release import full_builder, initial_release
    from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
    from cloud_aggregator.simulate import resolve_records

    records = list(resolve_records(args.calibration))
    if store.latest_model(format=RELEASE_FORMAT) is None:
        rel = initial_release(records, env, cache, seed=args.seed)
        source = f"random student, seed {args.seed}"
        store.put_model(stored_blob(rel, {}), format=RELEASE_FORMAT, metrics={"source": source})
    return full_builder(records, env, cache)


def _distiller(s: Any, args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    if s.distill_every <= 0:
        return None
    from cloud_aggregator.distillation import transfer_distiller
    from cloud_aggregator.simulate import resolve_records
    from common.datasets import default_cache_dir

    return transfer_distiller(
        list(resolve_records(args.transfer)), env, default_cache_dir(env) / "beat-cache"
    )


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand."""
    from cloud_aggregator.cli import _common

    p = subparsers.add_parser(
        "simulate",
        help="MIT-BIH patients as devices of the round engine (real broker or in memory)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--grid",
        choices=("mqtt", "memory"),
        default="mqtt",
        help="devices over the broker of --broker (default) or in this process",
    )
    p.add_argument(
        "--mode",
        choices=("head", "full"),
        default="head",
        help="train the head on the shipped backbone, or the whole network from a random start "
        "(devices with torch; the others train its head)",
    )
    p.add_argument(
        "--calibration",
        default="106,209,223",
        help="--mode full: MIT-BIH records of the server's int8 calibration beats",
    )
    p.add_argument(
        "--task",
        choices=("beat", "rhythm"),
        default="beat",
        help="beat: MIT-BIH patients; rhythm: CinC 2017 recordings, one device each (--mode full)",
    )
    p.add_argument(
        "--clients",
        default="ds1",
        help="beat: ds1, ds2 or a comma list of records (default ds1 = 22 clients); "
        "rhythm: cinc2017 (every recording outside --eval-fold) or cinc2017:N (N of them)",
    )
    p.add_argument(
        "--eval-fold",
        type=int,
        default=0,
        help="rhythm: the fold of the rhythm CV held out as the server's validation (default 0)",
    )
    p.add_argument(
        "--central",
        action="store_true",
        help="rhythm: one device holding every client's recordings (the centralised baseline, "
        "same engine, trainer and settings)",
    )
    p.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        help="rhythm: version 1 trained this many epochs on the server's MIT-BIH and AFTDB "
        "windows (default 0: a random start)",
    )
    p.add_argument(
        "--eval-max",
        type=int,
        help="rhythm: score only this many recordings of the held-out fold (quick runs)",
    )
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--strategy", default="fedavg")
    p.add_argument(
        "--eval", default="ds2", help="held-out records evaluated every round ('' = none)"
    )
    p.add_argument(
        "--drop",
        type=float,
        default=0.1,
        help="per-round drop-out probability of a selected client",
    )
    p.add_argument(
        "--slow",
        type=float,
        default=0.1,
        help="probability that a client is slow in a round (mqtt grid)",
    )
    p.add_argument("--slow-s", type=float, default=5.0, help="extra delay of a slow client, s")
    p.add_argument("--seed", type=int, default=0, help="seed of the drop-outs (memory grid)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="round config (see `aggregator --set`)",
    )
    p.add_argument("--max-seconds", type=float, default=1800.0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_simulate)
