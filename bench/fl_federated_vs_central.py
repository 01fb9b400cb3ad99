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
    ap.add_argument("--seeds", type=int, default=3, help="repeat with seeds seed..seed+n-1")
    ap.add_argument("--save-head", type=Path, help="write the first FedAvg head (npz W, b)")
    args = ap.parse_args()
    train = load_embeddings(ds1(), args.model)
    test = pooled(load_embeddings(ds2(), args.model))
    cfg = fl.RoundConfig(
        local_epochs=args.local_epochs, lr=args.lr, batch_size=64, clip_norm=0.0, compression="int8"
    )
    x, y = pooled(train)
    arms: dict[str, list[dict]] = {
        "centralised": [],
        "fedavg": [],
        "fedprox": [],
        "fedavg_drop30": [],
    }
    for seed in range(args.seed, args.seed + args.seeds):
        t0 = time.perf_counter()
        head0 = init_head(x.shape[1], seed)
        epochs = max(1, args.rounds * args.local_epochs // 3)
        fit = tr.train_head(
            x,
            y,
            head0[tr.HEAD_W],
            head0[tr.HEAD_B],
            epochs=epochs,
            lr=args.lr,
            batch_size=64,
            seed=seed,
        )
        arms["centralised"].append(
            {
                "final": evaluate({tr.HEAD_W: fit.weight, tr.HEAD_B: fit.bias}, *test),
                "epochs": epochs,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        arms["fedavg"].append(federated(train, test, args.rounds, cfg, "fedavg", 0.0, seed))
        arms["fedprox"].append(
            federated(train, test, args.rounds, cfg, "fedprox", 0.0, seed, args.mu)
        )
        arms["fedavg_drop30"].append(federated(train, test, args.rounds, cfg, "fedavg", 0.3, seed))
    with np.load(args.model.with_name(args.model.stem + ".head.npz")) as z:
        pretrained = evaluate({tr.HEAD_W: z["W"], tr.HEAD_B: z["b"]}, *test)

    def f1s(name: str) -> np.ndarray:
        return np.array([r["final"]["macro_f1"] for r in arms[name]])

    def stat(v: np.ndarray) -> dict[str, float]:
        return {"mean": round(float(v.mean()), 2), "std": round(float(v.std()), 2)}

    out = {
        "benchmark": "fl_federated_vs_central",
        "protocol": "DS1 (22 records = 22 clients) -> DS2 (22 records), head on frozen int8 backbone, same random init per seed",
        "model": str(args.model.name),
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "lr": args.lr,
        "seeds": args.seeds,
        "macro_f1_mean": {k: round(float(f1s(k).mean()), 4) for k in arms},
        "gap_macro_f1_points": {
            "fedavg_vs_central": stat(100 * (f1s("centralised") - f1s("fedavg"))),
            "fedprox_vs_central": stat(100 * (f1s("centralised") - f1s("fedprox"))),
            "drop30_vs_no_drop": stat(100 * (f1s("fedavg") - f1s("fedavg_drop30"))),
        },
        "runs": {
            k: [{kk: vv for kk, vv in r.items() if kk != "head"} for r in v]
            for k, v in arms.items()
        },
        "pretrained_head_reference": pretrained,
    }
    if args.save_head:
        head = arms["fedavg"][0]["head"]
        np.savez(args.save_head, W=head[tr.HEAD_W], b=head[tr.HEAD_B])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
