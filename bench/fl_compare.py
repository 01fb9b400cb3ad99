"""Federated vs centralised training on the 22 MIT-BIH DS1 clients, DS2 as the test set, through
the product's round engine (no round loop of its own).

Every arm runs ``medchain.simulation``: the aggregator's service and round engine with the edge's
participants, in process (``--grid memory``) or over the broker and store given
(``--grid mqtt --broker ... --store postgresql://...``). Arms, each from the same seeded start:

- ``fedavg``, ``fedprox``: each DS1 record is one device;
- ``fedavg_drop30``: FedAvg where each invited device drops out with probability 0.3;
- ``central``: one device holding every DS1 beat (the same trainer, the same engine), the
  control that isolates federation.

``--mode head`` trains a random head on the shipped int8 backbone (numpy on the devices);
``--mode full`` the whole student network from a random start (torch on the devices, an int8
release built by the server each round). The server scores every round's model on DS2 (the
release gate is off: a run from a random start has nothing to protect, and DS2 must not steer
training). ``--flower PYTHON`` also runs Flower's FedAvg on the same clients
(``../shared/peer/flower_plus.py`` in the given interpreter) once per seed, interleaved, for the
round-time ratio measured in the same run. Prints a table, then JSON (``--record`` also keeps it
in docs/results/).

    nice -n 10 python bench/fl_compare.py --mode full --rounds 25 --seeds 3
    python bench/fl_compare.py --mode head --rounds 30 --seeds 3 --arms fedavg,fedprox,central
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from cloud_aggregator.config import AggregatorSettings  # noqa: E402
from cloud_aggregator.releases import RELEASE_FORMAT, release_from_model_dir, stored_blob  # noqa: E402
from cloud_aggregator.simulate import (  # noqa: E402
    SimulationPlan,
    resolve_records,
    run_over_broker,
    write_client_npz,
)
from common.datasets import default_cache_dir  # noqa: E402
from medchain.simulation import run_in_memory  # noqa: E402
from store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "pretrained" / "beat.onnx"
NSVF = ("N", "S", "V", "F")
ARMS = ("fedavg", "fedprox", "fedavg_drop30", "central")


def nsvf_f1(metrics: dict[str, Any]) -> float:
    """Mean F1 over N, S, V and F (Flower's ``macro_f1``); an undefined F1 counts as 0."""
    vals = [metrics.get(f"f1_{c}") for c in NSVF]
    return float(np.mean([v if isinstance(v, float) and np.isfinite(v) else 0.0 for v in vals]))


def subsample(folder: Path, max_n: int, seed: int) -> None:
    """Keep at most ``max_n`` N beats (class 0) and every other beat in each client's npz."""
    rng = np.random.default_rng(seed)
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        labels = data["labels"]
        normal = np.flatnonzero(labels == 0)
        keep = np.sort(np.concatenate([np.flatnonzero(labels != 0),
                                       rng.permutation(normal)[:max_n]]))  # fmt: skip
        np.savez(path, **{k: v[keep] for k, v in data.items()})


def pool(folder: Path, out: Path) -> None:
    """One npz holding every client's beats (the centralised arm's single device)."""
    parts = [dict(np.load(p)) for p in sorted(folder.glob("*.npz"))]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "central.npz", **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def random_head_release(seed: int) -> Any:
    """The shipped int8 backbone with a seeded random head (head mode's common start)."""
    from cloud_aggregator.releases import HEAD_B, HEAD_W, next_release

    base = release_from_model_dir(MODEL)
    rng = np.random.default_rng(seed)
    w = base.tensors[HEAD_W]
    head = {HEAD_W: rng.normal(0, 0.01, w.shape).astype(np.float32),
            HEAD_B: np.zeros_like(base.tensors[HEAD_B])}  # fmt: skip
    return next_release(base, head, 0, {"source": f"random head, seed {seed}"})


def run_arm(args: argparse.Namespace, arm: str, seed: int, data: Path, env: dict[str, str],
            cache: Path) -> dict[str, Any]:  # fmt: skip
    """One arm, one seed, through the engine; the per-round history and the timing."""
    from cloud_aggregator.full_release import full_builder, initial_release

    work = Path(tempfile.mkdtemp(prefix=f"fl-{arm}-{seed}-"))
    store_url = args.store or f"sqlite:///{work / 'store.db'}"
    if store_url.startswith("postgresql"):  # a fresh schema per arm and seed
        store_url += (
            "&" if "?" in store_url else "?"
        ) + f"schema=flbench_{arm}_{seed}_{os.getpid()}"
    store = open_store(store_url)
    start = (initial_release(args.calibration.split(","), env, cache, seed=seed)
             if args.mode == "full" else random_head_release(seed))  # fmt: skip
    store.put_model(stored_blob(start, {}), format=RELEASE_FORMAT)
    builder = full_builder(args.calibration.split(","), env, cache) if args.mode == "full" else None
    clients = tuple(p.stem.removeprefix("mitdb-") for p in sorted(data.glob("*.npz")))
    # fraction 1.0 invites every device online; a round opens with half of them online (the
    # devices that dropped out of a round are offline until the next one opens: with every
    # device required, the drop-out arm never opened its second round)
    cfg = {"mode": args.mode, "local_epochs": 1, "lr": args.lr, "batch_size": args.batch_size,
           "min_clients": max(1, len(clients) // 2), "quorum_fraction": 0.5,
           "deadline_s": args.deadline, "max_examples": 1_000_000, "max_attempts": 100}  # fmt: skip
    if arm == "fedprox":
        cfg["strategy_params"] = {"mu": args.mu}
    plan = SimulationPlan(clients, args.rounds, "fedprox" if arm == "fedprox" else "fedavg",
                          cfg, drop=0.3 if arm == "fedavg_drop30" else 0.0,
                          eval_records=resolve_records("ds2"), max_seconds=args.max_seconds)  # fmt: skip
    settings = AggregatorSettings(broker_url=args.broker, store_url=store_url,
                                  worker=f"bench-{arm}-{seed}", poll_s=0.05, gate_margin=1.0,
                                  gate_class_margin=1.0, screen_suspects=False, round_interval_s=0.0, seed=seed)  # fmt: skip
    kw = {"cache": cache, "builder": builder}
    try:
        if args.grid == "memory":
            out = run_in_memory(store, settings, plan, env, data, work / "work", seed=seed, **kw)
        else:
            out = run_over_broker(store, settings, plan, env, data, work, **kw)
    finally:
        store.close()
    curve = [{"round": h.get("round_no"), "nsvf_f1": round(nsvf_f1(h), 4),
              "macro_f1": round(float(h.get("macro_f1", float("nan"))), 4),
              "device_macro_f1": round(float(h.get("device_macro_f1", float("nan"))), 4),
              "round_s": round(float(h.get("round_s", float("nan"))), 2)}
             for h in out["rounds"] if h["state"] == "closed"]  # fmt: skip
    final = out["final"] or {}
    return {"arm": arm, "seed": seed, "rounds_closed": out["rounds_closed"],
            "final_nsvf_f1": round(nsvf_f1(final), 4),
            "final": {k: final.get(k) for k in ("macro_f1", "se_S", "ppv_S", "se_V", "ppv_V")},
            "round_s_median": out["round_s_median"],
            "uplink_bytes_per_client_round": out["uplink_bytes_per_client_round"],
            "downlink_bytes_per_round": out["downlink_bytes_per_round"], "curve": curve}  # fmt: skip


def default_peer(env: dict[str, str]) -> Path:
    """../shared/peer/flower_plus.py beside the datasets (a worktree elsewhere still finds it)."""
    data = env.get("MEDCHAIN_DATA")
    shared = Path(data).resolve().parent if data else ROOT.parent / "shared"
    return shared / "peer" / "flower_plus.py"


def run_flower(python: str, peer: Path, rounds: int, env: dict[str, str]) -> dict[str, Any]:
    """Flower's FedAvg on the same 22 clients (../shared/peer): final F1 and round times."""
    done = subprocess.run([python, str(peer), "--rounds", str(rounds)], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=7200, check=True)  # fmt: skip
    lines = [json.loads(s) for s in done.stdout.splitlines() if s.startswith("{")]
    per_round = [x for x in lines if "round_s" in x]
    times = [x["round_s"] for x in per_round if isinstance(x.get("round_s"), (int, float))]
    last = per_round[-1] if per_round else {}
    return {"arm": "flower_fedavg", "final_nsvf_f1": last.get("macro_f1", 0.0) / 100,
            "round_s_median": statistics.median(times) if times else None, "rounds": len(per_round)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("head", "full"), default="full")
    ap.add_argument("--grid", choices=("memory", "mqtt"), default="memory")
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--store", default="", help="store URL (default: SQLite per arm)")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mu", type=float, default=0.01)
    ap.add_argument("--max-n", type=int, default=300, help="N beats kept per client, 0 = all")
    ap.add_argument("--calibration", default="106,209,223")
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--max-seconds", type=float, default=7200.0)
    ap.add_argument("--flower", default="", help="python of a venv with flwr: run it interleaved")
    ap.add_argument(
        "--peer", default="", help="flower_plus.py (default: ../shared/peer beside MEDCHAIN_DATA)"
    )
    registry.add_record_argument(ap, "fl_compare")
    args = ap.parse_args()
    env = dict(os.environ)
    peer = Path(args.peer) if args.peer else default_peer(env)
    if args.flower and not peer.is_file():
        ap.error(f"--flower: no Flower peer at {peer} (give --peer)")
    cache = default_cache_dir(env) / "beat-cache"
    data = Path(tempfile.mkdtemp(prefix="fl-data-"))
    write_client_npz(resolve_records("ds1"), data / "clients", env, cache)
    if args.max_n > 0:
        subsample(data / "clients", args.max_n, 12345)
    pool(data / "clients", data / "central")
    runs: list[dict[str, Any]] = []
    t0 = time.time()
    for seed in range(args.seeds):
        if args.flower:
            runs.append({**run_flower(args.flower, peer, args.rounds, env), "seed": seed})
        for arm in args.arms.split(","):
            folder = data / ("central" if arm == "central" else "clients")
            runs.append(run_arm(args, arm, seed, folder, env, cache))
            print(f"{arm} seed {seed}: NSVF F1 {runs[-1]['final_nsvf_f1']:.3f}, "
                  f"round {runs[-1]['round_s_median']} s", file=sys.stderr)  # fmt: skip
    result = report(args, runs, time.time() - t0)
    if args.record:
        registry.record(args.record, result, sys.argv)
    print(json.dumps(result, indent=1))


def report(args: argparse.Namespace, runs: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Means over seeds and the gaps the issue asks for (points of mean N/S/V/F F1)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["arm"], []).append(r)

    def f1(arm: str) -> np.ndarray:
        return np.array([100 * r["final_nsvf_f1"] for r in by.get(arm, [])])

    def gap(a: str, b: str) -> dict[str, float] | None:
        if a not in by or b not in by:
            return None
        d = f1(a) - f1(b)
        return {"mean": round(float(d.mean()), 2), "std": round(float(d.std()), 2)}

    times = {a: statistics.median([r["round_s_median"] for r in v if r.get("round_s_median")])
             for a, v in by.items() if any(r.get("round_s_median") for r in v)}  # fmt: skip
    return {
        "benchmark": "fl_compare", "mode": args.mode, "grid": args.grid, "rounds": args.rounds,
        "seeds": args.seeds, "max_n": args.max_n,
        "nsvf_f1_mean_points": {a: round(float(f1(a).mean()), 2) for a in by},
        "gap_points": {"central_minus_fedavg": gap("central", "fedavg"),
                       "central_minus_fedprox": gap("central", "fedprox"),
                       "fedavg_minus_drop30": gap("fedavg", "fedavg_drop30"),
                       "fedavg_minus_flower": gap("fedavg", "flower_fedavg")},
        "round_s_median": times,
        "round_time_ratio_fedavg_over_flower": (
            round(times["fedavg"] / times["flower_fedavg"], 3)
            if "fedavg" in times and "flower_fedavg" in times else None),
        "wall_s": round(wall_s, 1), "runs": runs,
    }  # fmt: skip


if __name__ == "__main__":
    main()
