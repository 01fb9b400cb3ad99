"""``medchain simulate --task rhythm --clients cinc2017[:N] --mode full``: CinC 2017 users.

Every CinC 2017 recording outside the held-out fold is one user's device (``cinc-<record>``,
its windows and label in an npz for the run only); the fold ``--eval-fold`` of the rhythm CV
(``models.rhythm_cv``) is the server's validation set, scored every round
(:class:`~cloud_aggregator.evaluation_rhythm.RhythmEvaluator`); int8 calibration uses the
server's MIT-BIH DS1 and AFTDB windows. Version 1 of an empty store is the rhythm student from
a seeded random start, or (``--pretrain-epochs``) trained on those windows first. The round engine, the devices' trainer and the grids are those of the
beat task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ConfigError

SOURCE = "cinc2017"

# The round config of a rhythm run unless ``--set`` says otherwise, chosen on the development
# fold 1 (docs/federated.md, "Rhythm"): device SGD (Adam's steps ignore the class weights on a
# one-class device), one pass, the release's batch-norm statistics, class weights count^-0.5
# from the labels the devices reported. lr 0.002: SGD from the Adam-trained start is unstable
# above it; one averaged step at lr 0.01 (update norm 0.11) raised the "other" logit by 4.5 on
# average and every recording was called O, at 0.05 the run then sat at "N for everything".
RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.002,
    "local_epochs": 1,
    "norm": "frozen",
    "class_balance": 0.5,
}


@dataclass(frozen=True)
class RhythmRun:
    """What the simulation needs from the rhythm task: the device ids, the held-out
    evaluator, the builder of each round's release and the held-out scores of the model the
    run starts from (empty when the store already held one)."""

    clients: tuple[str, ...]
    evaluator: Any
    builder: Any
    held_out: int
    initial: dict[str, float]


# The server's step of a federated rhythm run with FedAvg (FedAvgM, Hsu et al. 2019), chosen on
# fold 1 (6,582 devices, 50 rounds, seed 0; rounds 31-50): plain FedAvg 0.595 (SD 0.028 between
# rounds), momentum 0.9 at server lr 0.15 0.623 (SD 0.011), at 0.25 0.621 (0.015). One device
# step at lr 0.002 moves the model little, and a larger one throws the sharp start (server lr 3
# collapsed at round 10); momentum adds up what the cohorts agree on and averages out what
# one cohort's labels pull to.
SERVER_STEP: dict[str, float] = {"momentum": 0.9, "server_lr": 0.15}


def client_config(
    overrides: Mapping[str, Any], strategy: str = "fedavg", central: bool = False
) -> dict[str, Any]:
    """The round config of a rhythm run: :data:`RECIPE`, with :data:`SERVER_STEP` for a
    federated FedAvg run (the centralised baseline trains plainly), ``overrides`` (``--set``)
    on top."""
    server = {"strategy_params": dict(SERVER_STEP)} if strategy == "fedavg" and not central else {}
    return {**RECIPE, **server, **overrides}


def parse_clients(spec: str) -> int | None:
    """``cinc2017`` (every recording outside the held-out fold) or ``cinc2017:N`` (N of them)."""
    name, _, count = spec.partition(":")
    if name.lower() != SOURCE:
        raise ConfigError(f"--task rhythm takes --clients {SOURCE}[:N], not {spec!r}")
    if not count:
        return None
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"--clients {spec!r}: N must be a positive integer")
    return int(count)


def prepare(
    store: Any,
    spec: str,
    eval_fold: int,
    eval_max: int | None,
    seed: int,
    pooled: bool,
    pretrain_epochs: int,
    env: Mapping[str, str],
    cache: Path | None,
    data_dir: Path,
) -> RhythmRun:
    """Write the devices' npz files to ``data_dir`` (one device holding them all with
    ``pooled``: the centralised baseline), seed version 1 into an empty store and return the
    run's clients, evaluator and builder."""
    from cloud_aggregator.evaluation_rhythm import RhythmEvaluator
    from cloud_aggregator.full_release import rhythm_builder
    from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
    from models import rhythm_devices as rd
    from models.federated_rhythm import initial_rhythm_release
    from models.tasks.base import LoadOptions

    options = LoadOptions(env=env, cache_dir=cache)
    try:
        devices, held = rd.federated_split(
            rd.reference_folds(options), eval_fold, parse_clients(spec), seed, eval_max
        )
    except ValueError as exc:
        raise ConfigError(f"--clients {spec} --eval-fold {eval_fold}: {exc}") from exc
    bank = rd.cinc_windows(sorted({*devices, *held}), options)
    counts = rd.write_device_npz(bank, devices, data_dir, pooled=pooled)
    calibration = rd.server_windows(options)
    evaluator = RhythmEvaluator(bank.subset(np.isin(bank.records, held)))
    initial: dict[str, float] = {}
    if store.latest_model(format=RELEASE_FORMAT) is None:
        rel = initial_rhythm_release(calibration, seed=seed, pretrain_epochs=pretrain_epochs)
        store.put_model(stored_blob(rel, {}), format=RELEASE_FORMAT,
                        metrics={"source": rel.metrics["source"]})  # fmt: skip
        initial = evaluator(rel)
    return RhythmRun(tuple(counts), evaluator, rhythm_builder(calibration), len(held), initial)
