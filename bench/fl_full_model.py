"""Federated (22 DS1 clients) vs centralised training of the WHOLE beat student, DS1 -> DS2.

Every arm starts from the same random initialisation of the student network
(``models.tasks.beat.TASK.student`` built by ``models.nets.build_net``; inputs beat windows
``(N, 2, 96)`` + RR features ``(N, 8)`` from ``models.tasks.beat.load``) and processes the same
number of sample-gradients (rounds x 1 local epoch over every client's beats = rounds epochs
over the pooled beats):

- ``fedavg`` / ``fedprox``: each DS1 record is one client. Local training is the device's torch
  trainer (``edge_agent.trainer_torch.full_update``: Adam, class-weighted cross-entropy with
  weights ``count^-0.5`` of the LOCAL labels, FedProx term, int8 delta). The server path runs
  in-process with the aggregator's real code: wire codec (``encode_update``/``decode_update``),
  ``validation.validate_update`` with the service's default bounds, ``round_aggregation.
  aggregate_round`` and the strategy. No broker: the MQTT path is covered by
  ``tests/integration`` and ``medchain simulate``.
- ``central_same``: the same trainer on the pooled beats, one epoch per "round" (FedAvg with a
  single client holding all data, no compression): the control that isolates federation.
- ``central_fit``: the production recipe (``models.train.fit`` with the beat ``TrainSpec``:
  AdamW + one-cycle, class-balanced sampling ``count^-0.4``, augmentation), budget matched.
- ``fedavg_drop30``: FedAvg where each client misses each round with probability 0.3.

To fit the time box each client keeps at most ``--max-n`` N beats (random, fixed seed) and all
S/V/F/Q beats; DS2 is evaluated in full. Prints a compact table, then JSON.

    nice -n 10 python bench/fl_full_model.py --rounds 25 --seeds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_aggregator.config import AggregatorSettings  # noqa: E402
from cloud_aggregator.evaluation import summary_metrics  # noqa: E402
from cloud_aggregator.round_aggregation import StoredUpdate, aggregate_round  # noqa: E402
from cloud_aggregator.strategies import make_strategy  # noqa: E402
from cloud_aggregator.validation import ValidationPolicy, validate_update  # noqa: E402
from common import fl_protocol as fl  # noqa: E402
from common.datasets import default_cache_dir  # noqa: E402
from edge_agent.trainer import LabelledExamples  # noqa: E402
from edge_agent.trainer_torch import full_update, load_tensors, net_tensors  # noqa: E402
from models.nets import SignalNet, build_net  # noqa: E402
from models.tasks.base import LoadOptions, TaskData  # noqa: E402
from models.tasks.beat import TASK  # noqa: E402
from models.train import fit, predict_logits  # noqa: E402

KEYS = ("macro_f1", "accuracy", "se_S", "ppv_S", "se_V", "ppv_V")


def subsample(data: TaskData, max_n: int, seed: int) -> TaskData:
    """Keep at most ``max_n`` N beats (class 0) per record and every other beat."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(data), bool)
    for g in np.unique(data.groups):
        idx = np.flatnonzero(data.groups == g)
        n_idx = idx[data.labels[idx] == 0]
        keep[idx[data.labels[idx] != 0]] = True
        keep[rng.permutation(n_idx)[:max_n] if max_n > 0 else n_idx] = True
    return TaskData(data.signal[keep], data.features[keep], data.labels[keep], data.groups[keep])


def examples(data: TaskData, mask: np.ndarray | None = None) -> LabelledExamples:
    m = np.ones(len(data), bool) if mask is None else mask
    return LabelledExamples({"beat": data.signal[m], "rr": data.features[m]}, data.labels[m])


def new_net(data: TaskData) -> SignalNet:
    _, c, length = data.signal.shape
    return build_net(TASK.student, c, length, data.features.shape[1], len(TASK.classes))


def evaluate(net: SignalNet, weights: fl.Tensors | None, test: TaskData) -> dict[str, float]:
    if weights is not None:
        load_tensors(net, weights)
    pred = np.argmax(predict_logits(net, test), axis=1).astype(np.int64)
    m = summary_metrics(test.labels, pred, TASK.classes)
    return {k: round(m[k], 4) for k in KEYS}


def federated(
    train: TaskData,
    test: TaskData,
    init: fl.Tensors,
    cfg: fl.RoundConfig,
    *,
    rounds: int,
    strategy_name: str,
    mu: float,
    drop: float,
    seed: int,
    eval_every: int,
) -> dict[str, Any]:
    """Rounds of local ``full_update`` on every (non-dropped) client + the server path."""
    net = new_net(train)
    strategy = make_strategy(strategy_name, **({"mu": mu} if strategy_name == "fedprox" else {}))
    cfg = strategy.configure(cfg)
    settings = AggregatorSettings()
    policy = ValidationPolicy(
        settings.norm_bound, max_compression_error=settings.max_compression_error
    )
    shapes = {k: tuple(v.shape) for k, v in init.items()}
    clients = {str(g): train.groups == g for g in np.unique(train.groups)}
    rng = np.random.default_rng(seed + 1)
    weights, state = dict(init), {}
    curve: list[dict[str, Any]] = []
    rejects: dict[str, int] = {}
    bytes_up: list[int] = []
    t0 = time.perf_counter()
    for r in range(1, rounds + 1):
        stored, losses = [], []
        for ci, (cid, mask) in enumerate(clients.items()):
            if rng.random() < drop:
                continue
            u = full_update(
                net,
                round_id=str(r),
                client_id=f"mitdb-{cid}",
                base_version=f"v{r - 1}",
                global_tensors=weights,
                examples=examples(train, mask),
                config=cfg,
                seed=seed * 100_000 + r * 100 + ci,
            )
            wire = fl.encode_update(u)
            back = fl.decode_update(wire)
            reason = validate_update(back, shapes, f"v{r - 1}", policy)
            if reason is not None:
                rejects[str(reason)] = rejects.get(str(reason), 0) + 1
                continue
            bytes_up.append(len(wire))
            losses.append(float(u.metrics["loss"]))
            stored.append(StoredUpdate(u.client_id, wire, {"bytes": float(len(wire))}))
        res = aggregate_round(weights, state, stored, strategy) if stored else None
        if res is not None:
            weights, state = res.weights, res.state
        if r % eval_every == 0 or r == rounds:
            curve.append(
                {
                    "round": r,
                    "clients": len(stored),
                    "loss": round(float(np.mean(losses)), 4) if losses else None,
                    **evaluate(net, weights, test),
                    "t_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(f"  {strategy_name} drop={drop} seed={seed} {curve[-1]}", file=sys.stderr)
    return {
        "final": curve[-1],
        "curve": curve,
        "rejects": rejects,
        "uplink_bytes_mean": float(np.mean(bytes_up)) if bytes_up else 0.0,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def central_same(
    train: TaskData,
    test: TaskData,
    init: fl.Tensors,
    cfg: fl.RoundConfig,
    *,
    rounds: int,
    seed: int,
    eval_every: int,
) -> dict[str, Any]:
    """The device trainer on the pooled beats, one epoch per round, uncompressed."""
    net = new_net(train)
    cfg = dataclasses.replace(cfg, compression="none", clip_norm=0.0)
    weights, curve, t0 = dict(init), [], time.perf_counter()
    pooled = examples(train)
    for r in range(1, rounds + 1):
        u = full_update(
            net,
            round_id=str(r),
            client_id="central",
            base_version="c",
            global_tensors=weights,
            examples=pooled,
            config=cfg,
            seed=seed * 100_000 + r * 100 + 99,
        )
        weights = {k: (weights[k] + u.delta[k]).astype(np.float32) for k in weights}
        if r % eval_every == 0 or r == rounds:
            curve.append(
                {
                    "round": r,
                    "loss": round(float(u.metrics["loss"]), 4),
                    **evaluate(net, weights, test),
                    "t_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(f"  central_same seed={seed} {curve[-1]}", file=sys.stderr)
    return {"final": curve[-1], "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}


def central_fit(
    train: TaskData, test: TaskData, init: fl.Tensors, *, rounds: int, seed: int, eval_every: int
) -> dict[str, Any]:
    """``models.train.fit`` with the beat TrainSpec, ``rounds`` epochs of ``len(train)`` draws."""
    net = new_net(train)
    load_tensors(net, init)
    spec = dataclasses.replace(
        TASK.train, epochs=rounds, steps_per_epoch=-(-len(train) // TASK.train.batch_size)
    )
    curve: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def on_epoch(epoch: int, loss: float, _m: object) -> None:
        if (epoch + 1) % eval_every == 0 or epoch + 1 == rounds:
            curve.append(
                {
                    "round": epoch + 1,
                    "loss": round(loss, 4),
                    **evaluate(net, None, test),
                    "t_s": round(time.perf_counter() - t0, 1),
                }
            )
            net.train()
            print(f"  central_fit seed={seed} {curve[-1]}", file=sys.stderr)

    fit(net, train, spec, seed=seed, n_classes=len(TASK.classes), on_epoch=on_epoch)
    return {"final": curve[-1], "curve": curve, "seconds": round(time.perf_counter() - t0, 1)}


def table(arms: dict[str, list[dict[str, Any]]]) -> str:
    """Compact text table: final metrics per arm and seed, then macro-F1 per evaluated round."""
    lines = [
        f"{'arm':<15}{'seed':>5}{'mF1':>7}{'Se_S':>7}{'+P_S':>7}{'Se_V':>7}{'+P_V':>7}{'s':>7}"
    ]
    for name, runs in arms.items():
        for run in runs:
            f = run["final"]
            lines.append(
                f"{name:<15}{run['seed']:>5}{f['macro_f1']:>7.3f}{f['se_S']:>7.3f}{f['ppv_S']:>7.3f}"
                f"{f['se_V']:>7.3f}{f['ppv_V']:>7.3f}{run['seconds']:>7.0f}"
            )
    first = next(iter(arms.values()))[0]["curve"]
    lines.append(
        f"macro-F1 per round (seed {runs[0]['seed']}): " + " ".join(f"r{c['round']}" for c in first)
    )
    for name, runs in arms.items():
        lines.append(f"{name:<15}" + " ".join(f"{c['macro_f1']:.3f}" for c in runs[0]["curve"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--lr", type=float, default=3e-3, help="local Adam lr (beat TrainSpec lr)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mu", type=float, default=0.01, help="FedProx mu (strategy default)")
    ap.add_argument("--max-n", type=int, default=300, help="N beats kept per client, 0 = all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--no-drop", action="store_true", help="skip the 30 %% drop-out arm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument(
        "--merge", type=Path, nargs="+", help="only combine the JSON of runs made with --json"
    )
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        merged = {k: [r for p in parts for r in p["runs"][k]] for k in parts[0]["runs"]}
        report(merged, {**parts[0], "merged_from": [str(p) for p in args.merge]}, None)
        return
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    env = dict(os.environ)
    opts = LoadOptions(env=env, cache_dir=default_cache_dir(env))
    full_ds1 = TASK.load("ds1", opts)
    train = subsample(full_ds1, args.max_n, 12345)
    test = TASK.load("ds2", opts)
    cfg = fl.RoundConfig(
        mode="full",
        local_epochs=1,
        lr=args.lr,
        batch_size=args.batch_size,
        compression="int8",
        max_examples=100_000,
    )
    arms: dict[str, list[dict[str, Any]]] = {
        "central_same": [],
        "central_fit": [],
        "fedavg": [],
        "fedprox": [],
    }
    if not args.no_drop:
        arms["fedavg_drop30"] = []
    kw = {"rounds": args.rounds, "eval_every": args.eval_every}
    for seed in range(args.seed, args.seed + args.seeds):
        torch.manual_seed(seed)
        init = net_tensors(new_net(train))
        arms["central_same"].append(central_same(train, test, init, cfg, seed=seed, **kw))
        arms["central_fit"].append(central_fit(train, test, init, seed=seed, **kw))
        for name, strat, drop in (
            ("fedavg", "fedavg", 0.0),
            ("fedprox", "fedprox", 0.0),
            ("fedavg_drop30", "fedavg", 0.3),
        ):
            if name in arms:
                arms[name].append(
                    federated(
                        train,
                        test,
                        init,
                        cfg,
                        strategy_name=strat,
                        mu=args.mu,
                        drop=drop,
                        seed=seed,
                        **kw,
                    )
                )
        for runs in arms.values():
            runs[-1]["seed"] = seed

    head = {
        "benchmark": "fl_full_model",
        "protocol": (
            "DS1 (22 records = 22 clients) -> DS2 (22 records, all beats); whole student net "
            "from the same random init per seed; equal sample-gradient budget"
        ),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_beats": {"kept": len(train), "ds1_total": len(full_ds1)},
        "train_class_counts": np.bincount(train.labels, minlength=5).tolist(),
        "test_beats": len(test),
        "wall_s": round(time.perf_counter() - t_all, 1),
    }
    report(arms, head, args.json)


def report(arms: dict[str, list[dict[str, Any]]], head: dict[str, Any], path: Path | None) -> None:
    """Print the table and the JSON (macro-F1 means, gaps in points over seeds, runs)."""

    def f1s(name: str) -> np.ndarray:
        return np.array([r["final"]["macro_f1"] for r in arms[name]])

    def gap(a: str, b: str) -> dict[str, float]:
        v = 100 * (f1s(a) - f1s(b))
        return {"mean": round(float(v.mean()), 2), "std": round(float(v.std()), 2)}

    out = {
        **{
            k: v
            for k, v in head.items()
            if k not in ("runs", "macro_f1_mean", "gap_macro_f1_points")
        },
        "macro_f1_mean": {k: round(float(f1s(k).mean()), 4) for k in arms},
        # the DS2 curve swings by several points between evaluations: a steadier summary
        "macro_f1_last3_evals_mean": {
            k: round(float(np.mean([c["macro_f1"] for r in v for c in r["curve"][-3:]])), 4)
            for k, v in arms.items()
        },
        "gap_macro_f1_points": {
            "central_same_minus_fedavg": gap("central_same", "fedavg"),
            "central_same_minus_fedprox": gap("central_same", "fedprox"),
            "central_fit_minus_fedavg": gap("central_fit", "fedavg"),
            **(
                {"fedavg_minus_drop30": gap("fedavg", "fedavg_drop30")}
                if "fedavg_drop30" in arms
                else {}
            ),
        },
        "runs": arms,
    }
    print(table(arms))
    text = json.dumps(out, indent=1)
    print(text)
    if path is not None:
        path.write_text(text)


if __name__ == "__main__":
    main()
