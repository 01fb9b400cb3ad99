"""Federated (22 DS1 clients) vs centralised training of the same head, DS1 -> DS2; and the
effect of 30 % random client drop-out per round.

Both arms start from the same random head on the same frozen int8 backbone and use the same
numpy trainer (``edge_agent.trainer.train_head``). The federated arm runs the real client and
server code paths in-process: local training, int8 compression, the update wire codec,
validation and the strategy (FedAvg or FedProx). Prints JSON.

    python bench/fl_federated_vs_central.py --rounds 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fl_data import CLASSES, DEFAULT_MODEL, ds1, ds2, load_embeddings, pooled  # noqa: E402
from cloud_aggregator.evaluation import summary_metrics  # noqa: E402
from cloud_aggregator.strategies import make_strategy  # noqa: E402
from cloud_aggregator.validation import ValidationPolicy, validate_update  # noqa: E402
from common import fl_protocol as fl  # noqa: E402
from edge_agent import trainer as tr  # noqa: E402


def evaluate(head: dict[str, np.ndarray], emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    pred = np.argmax(emb @ head[tr.HEAD_W].T + head[tr.HEAD_B], axis=1)
    m = summary_metrics(labels, pred.astype(np.int64), CLASSES)
    return {
        k: round(v, 4)
        for k, v in m.items()
        if k in ("macro_f1", "accuracy", "se_S", "ppv_S", "se_V", "ppv_V")
    }


def init_head(dim: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        tr.HEAD_W: rng.normal(0, 0.01, (len(CLASSES), dim)).astype(np.float32),
        tr.HEAD_B: np.zeros(len(CLASSES), np.float32),
    }


def federated(
    train,
    test,
    rounds: int,
    cfg: fl.RoundConfig,
    strategy_name: str,
    drop: float,
    seed: int,
    mu: float = 0.01,
) -> dict:
    head = init_head(next(iter(train.values())).emb.shape[1], seed)
    strategy = make_strategy(strategy_name, **({"mu": mu} if strategy_name == "fedprox" else {}))
    cfg = strategy.configure(cfg)
    rng = np.random.default_rng(seed + 1)
    shapes = {k: v.shape for k, v in head.items()}
    state: dict[str, np.ndarray] = {}
    curve, bytes_up, t0 = [], [], time.perf_counter()
    for r in range(1, rounds + 1):
        deltas = []
        for cid, d in train.items():
            if rng.random() < drop:
                continue
            u, _ = tr.head_update(
                round_id=str(r),
                client_id=f"mitdb-{cid}",
                base_version="v",
                global_tensors=head,
                emb=d.emb,
                labels=d.labels,
                config=cfg,
                seed=r,
            )
            wire = fl.encode_update(u)
            bytes_up.append(len(wire))
            back = fl.decode_update(wire)
            if validate_update(back, shapes, "v", ValidationPolicy(norm_bound=100.0)) is None:
                deltas.append((back.delta, back.n_examples))
        if deltas:
            head, state = strategy.aggregate(head, deltas, state)
        if r % 5 == 0 or r == rounds:
            curve.append({"round": r, **evaluate(head, *test)})
    return {
        "final": curve[-1],
        "curve": curve,
        "uplink_bytes_mean": float(np.mean(bytes_up)),
        "seconds": round(time.perf_counter() - t0, 1),
        "head": head,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--mu", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train = load_embeddings(ds1(), args.model)
    test = pooled(load_embeddings(ds2(), args.model))
    cfg = fl.RoundConfig(
        local_epochs=args.local_epochs, lr=args.lr, batch_size=64, clip_norm=0.0, compression="int8"
    )
    x, y = pooled(train)
    t0 = time.perf_counter()
    head0 = init_head(x.shape[1], args.seed)
    fit = tr.train_head(
        x,
        y,
        head0[tr.HEAD_W],
        head0[tr.HEAD_B],
        epochs=args.rounds * args.local_epochs // 3 or 1,
        lr=args.lr,
        batch_size=64,
        seed=args.seed,
    )
    central = {
        "final": evaluate({tr.HEAD_W: fit.weight, tr.HEAD_B: fit.bias}, *test),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    fedavg = federated(train, test, args.rounds, cfg, "fedavg", 0.0, args.seed)
    fedprox = federated(train, test, args.rounds, cfg, "fedprox", 0.0, args.seed, args.mu)
    drop30 = federated(train, test, args.rounds, cfg, "fedavg", 0.3, args.seed)
    with np.load(args.model.with_name(args.model.stem + ".head.npz")) as z:
        pretrained = evaluate({tr.HEAD_W: z["W"], tr.HEAD_B: z["b"]}, *test)
    out = {
        "benchmark": "fl_federated_vs_central",
        "protocol": "DS1 (22 records = 22 clients) -> DS2 (22 records), head on frozen int8 backbone, same random init",
        "model": str(args.model.name),
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "lr": args.lr,
        "centralised": central,
        "fedavg": {k: v for k, v in fedavg.items() if k != "head"},
        "fedprox": {k: v for k, v in fedprox.items() if k != "head"},
        "fedavg_drop30": {k: v for k, v in drop30.items() if k != "head"},
        "gap_macro_f1_points": {
            "fedavg_vs_central": round(
                100 * (central["final"]["macro_f1"] - fedavg["final"]["macro_f1"]), 2
            ),
            "fedprox_vs_central": round(
                100 * (central["final"]["macro_f1"] - fedprox["final"]["macro_f1"]), 2
            ),
            "drop30_vs_no_drop": round(
                100 * (fedavg["final"]["macro_f1"] - drop30["final"]["macro_f1"]), 2
            ),
        },
        "pretrained_head_reference": pretrained,
    }
    np.savez(
        Path("/tmp/fl_bench_fedavg_head.npz"),
        W=fedavg["head"][tr.HEAD_W],
        b=fedavg["head"][tr.HEAD_B],
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
