"""Personalisation on the device (Kiranyaz 2016 protocol): for every DS2 record, the first
5 minutes of labelled beats personalise the global head on the device
(``edge_agent.trainer.personalise``); the remaining 25 minutes are the test set.

Gross VEB/SVEB Se and +P over all DS2 test beats, for the global head and the personalised
heads. Targets: VEB Se > 95 / +P > 95, SVEB Se > 80 / +P > 80 (Kiranyaz 2016: VEB 95.0/89.5,
SVEB 64.6/62.1). Prints JSON.

    python bench/fl_personalised.py [--global-head fedavg|pretrained]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fl_data import CLASSES, DEFAULT_MODEL, ds2, load_embeddings  # noqa: E402
from cloud_aggregator.evaluation import summary_metrics  # noqa: E402
from edge_agent import trainer as tr  # noqa: E402

PERSONAL_S = 300.0  # first 5 minutes, s


def metrics(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    m = summary_metrics(labels, pred, CLASSES)
    return {
        k: round(100 * v, 2)
        for k, v in m.items()
        if k in ("macro_f1", "accuracy", "se_S", "ppv_S", "se_V", "ppv_V")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--global-head", type=Path, help="npz with W, b (default: the model's head)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--mu", type=float, default=0.01)
    ap.add_argument("--balance", type=float, default=0.5)
    args = ap.parse_args()
    head_file = args.global_head or args.model.with_name(args.model.stem + ".head.npz")
    with np.load(head_file) as z:
        glob = {tr.HEAD_W: z["W"].astype(np.float32), tr.HEAD_B: z["b"].astype(np.float32)}
    data = load_embeddings(ds2(), args.model)
    y_all, p_glob, p_pers, per_record, secs = [], [], [], {}, []
    for name, d in data.items():
        first = d.samples < PERSONAL_S * d.fs
        test = ~first
        t0 = time.perf_counter()
        head = tr.personalise(
            glob,
            "g",
            d.emb[first],
            d.labels[first],
            epochs=args.epochs,
            lr=args.lr,
            mu=args.mu,
            balance=args.balance,
        )
        secs.append(time.perf_counter() - t0)
        pg = np.argmax(tr.head_probs(d.emb[test], glob[tr.HEAD_W], glob[tr.HEAD_B]), 1)
        pp = np.argmax(head.predict(d.emb[test]), 1)
        y_all.append(d.labels[test])
        p_glob.append(pg)
        p_pers.append(pp)
        per_record[name] = {
            "train_beats": int(first.sum()),
            "test_beats": int(test.sum()),
            "acc_global": round(float(np.mean(pg == d.labels[test])), 4),
            "acc_personal": round(float(np.mean(pp == d.labels[test])), 4),
        }
    y, pg, pp = (
        np.concatenate(y_all),
        np.concatenate(p_glob).astype(np.int64),
        np.concatenate(p_pers).astype(np.int64),
    )
    out = {
        "benchmark": "fl_personalised",
        "protocol": "DS2 records: first 5 min labelled -> personalise head on device; test on the rest",
        "model": args.model.name,
        "global_head": str(head_file.name),
        "settings": {"epochs": args.epochs, "lr": args.lr, "mu": args.mu, "balance": args.balance},
        "test_beats": int(len(y)),
        "global_percent": metrics(y, pg),
        "personalised_percent": metrics(y, pp),
        "targets_percent": {"se_V": 95, "ppv_V": 95, "se_S": 80, "ppv_S": 80},
        "kiranyaz_2016_percent": {"se_V": 95.0, "ppv_V": 89.5, "se_S": 64.6, "ppv_S": 62.1},
        "personalise_seconds_per_record_mean": round(float(np.mean(secs)), 3),
        "per_record": per_record,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
