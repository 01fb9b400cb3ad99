"""Federated vs centralised rhythm training on CinC 2017 devices, through ``medchain simulate``.

Each arm is one ``medchain simulate --task rhythm --mode full --grid memory`` run (the product's
round engine, the devices' trainer, the server's int8 releases; no loop of its own), with its
own SQLite store, from the same start per seed:

- ``federated``: every sampled CinC recording is one device; ``--cohort`` devices per round
  (30 % over-selected), the devices' recipe of ``medchain simulate --task rhythm``
  (``simulation_rhythm.RECIPE``: SGD at lr 0.002 with the release's batch-norm statistics,
  class weights from the labels the devices reported), FedAvg with the server momentum of
  ``simulation_rhythm.SERVER_STEP`` (0.9, server lr 0.15);
- ``federated_drop30``: the same, each invited device drops out with probability 0.3;
- ``central``: one device holding every recording (``--central``), the same trainer and
  settings (SGD, frozen statistics, class weights by count^-0.5), plain FedAvg with one update per
  round = one epoch of local SGD in batches of ``--batch``, for as many recording visits as
  the federated arm's rounds (the control that isolates federation).

Both start from version 1 trained ``--pretrain`` epochs on the server's own MIT-BIH DS1 and
AFTDB windows (a random start did not get past predicting N within 60 rounds in the pilots).

The server scores every round on held-out recordings of one fold of the rhythm CV
(``--eval-fold``; the release gate and the screening of suspect updates are off, so the held-out
fold never steers training). Settings were chosen on the development fold 1; report fold 0.
Prints a table, then JSON (``--record`` keeps it in docs/results/). ``--grid mqtt`` runs every
arm's devices on their own MQTT connections to a private Mosquitto (one per run).

    OMP_NUM_THREADS=1 nice python bench/fl_rhythm.py --rounds 100 --seeds 3 --record
    OMP_NUM_THREADS=1 python bench/fl_rhythm.py --grid mqtt --clients 1000 --rounds 25 \
        --arms federated,central --record fl_rhythm_mqtt
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from medchain.simulation_rhythm import RECIPE, SERVER_STEP  # noqa: E402
from tests.support.services import run_mosquitto  # noqa: E402

ARMS = ("federated", "central", "federated_drop30")
DEVICES = 6582  # CinC recordings outside one fold of five (8,228 in all)
SCORES = ("macro_f1", "af_f1", "f1_N", "f1_O", "f1_noisy")


def arm_command(
    arm: str, args: argparse.Namespace, seed: int, store: Path, broker: str = ""
) -> list[str]:
    """The ``medchain simulate`` command line of one arm and seed (over ``broker`` if given)."""
    clients = "cinc2017" + (f":{args.clients}" if args.clients else "")
    cmd = [sys.executable, "-m", "medchain", "simulate", "--task", "rhythm", "--mode", "full",
           "--clients", clients, "--eval-fold", str(args.eval_fold), "--seed", str(seed),
           "--pretrain-epochs", str(args.pretrain), "--store", f"sqlite:///{store}",
           "--settings", str(store.parent / "agg.toml"), "--gate-margin", "1",
           "--gate-class-margin", "1", "--json", "--max-seconds", "36000"]  # fmt: skip
    # the devices' recipe is simulate's for the rhythm task (simulation_rhythm.RECIPE)
    if args.client_lr is not None:
        cmd += ["--set", f"lr={args.client_lr}"]
    if args.class_balance is not None:
        cmd += ["--set", f"class_balance={args.class_balance}"]
    if args.eval_max:
        cmd += ["--eval-max", str(args.eval_max)]
    if broker:  # every device on its own connection; no slow devices, as in memory
        cmd += ["--grid", "mqtt", "--broker", broker, "--slow", "0",
                "--set", f"deadline_s={args.deadline}"]  # fmt: skip
    else:
        cmd += ["--grid", "memory"]
    if arm == "central":
        epochs = max(1, round(args.rounds * args.cohort * 1.3 / (args.clients or DEVICES)))
        return cmd + ["--central", "--strategy", "fedavg", "--rounds", str(epochs), "--drop", "0",
                      "--set", "min_clients=1", "--set", f"batch_size={args.batch}"]  # fmt: skip
    drop = "0.3" if arm.endswith("drop30") else "0"
    return cmd + ["--strategy", "fedavg", "--rounds", str(args.rounds), "--drop", drop,
                  "--set", f"min_clients={args.cohort}", "--set", "fraction=0.01"]  # fmt: skip


def run_arm(arm: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One run; its summary (``simulate --json``) with the wall time."""
    with tempfile.TemporaryDirectory(prefix="fl-rhythm-") as tmp:
        store = Path(tmp) / "run.db"
        # the held-out fold reports only: no round picks between candidates on it
        (Path(tmp) / "agg.toml").write_text("[aggregator]\nscreen_suspects = false\n")
        t0 = time.monotonic()
        with contextlib.ExitStack() as stack:
            # a broker of its own per run: runs at once would share topics and device ids
            url = stack.enter_context(run_mosquitto()).url if args.grid == "mqtt" else ""
            out = subprocess.run(arm_command(arm, args, seed, store, url), capture_output=True,
                                 text=True, env=dict(os.environ), check=False)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"{arm} seed {seed} failed:\n{out.stderr[-3000:]}")
        summary: dict[str, Any] = json.loads(out.stdout)
        summary["bench_wall_s"] = time.monotonic() - t0
        return summary


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """Scores of the start and of the last round, the curve of macro-F1, and the costs."""
    closed = [h for h in summary["rounds"] if h["state"] == "closed"]
    final = closed[-1] if closed else {}
    return {
        "initial": {k: summary.get("initial", {}).get(k) for k in SCORES},
        "final": {k: final.get(k) for k in SCORES},
        # the held-out score moves by a few points between rounds: the last five, averaged
        "last5": {k: _mean([h.get(k) for h in closed[-5:]]) for k in SCORES},
        "curve": [round(float(h["macro_f1"]), 4) for h in closed],
        "rounds_closed": len(closed),
        "round_s_median": summary.get("round_s_median"),
        "uplink_bytes_per_client_round": summary.get("uplink_bytes_per_client_round"),
        "downlink_bytes_per_round": summary.get("downlink_bytes_per_round"),
        "wall_s": summary.get("bench_wall_s"),
    }


def _mean(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if isinstance(v, int | float) and v == v]
    return statistics.mean(finite) if finite else None


def gaps(
    results: dict[str, dict[int, dict[str, Any]]], a: str, b: str, at: str = "final"
) -> dict[str, float]:
    """Mean and standard deviation over seeds of ``a - b`` in CinC mean F1 points (``at`` the
    final round, or ``last5``: the mean of the last five)."""
    d = [100 * (results[a][s][at]["macro_f1"] - results[b][s][at]["macro_f1"])
         for s in results[a] if s in results[b]]  # fmt: skip
    return {"mean": statistics.mean(d), "std": statistics.stdev(d) if len(d) > 1 else 0.0,
            "seeds": len(d)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=0,
                   help="CinC recordings used as devices (0 = every one outside the fold)")  # fmt: skip
    p.add_argument("--cohort", type=int, default=100, help="devices per federated round")
    p.add_argument("--rounds", type=int, default=60, help="federated rounds")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--eval-fold", type=int, default=0)
    p.add_argument("--eval-max", type=int, default=0, help="held-out recordings (0 = the fold)")
    p.add_argument("--pretrain", type=int, default=10, help="epochs on the server's windows")
    p.add_argument("--client-lr", type=float, default=None, help="default: simulate's recipe")
    p.add_argument("--class-balance", type=float, default=None, help="default: the recipe's")
    p.add_argument("--batch", type=int, default=128, help="central arm's batch (about a cohort)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    p.add_argument("--grid", choices=("memory", "mqtt"), default="memory",
                   help="mqtt: each run's devices over a private Mosquitto")  # fmt: skip
    p.add_argument("--deadline", type=float, default=120.0, help="mqtt: round deadline, s")
    registry.add_record_argument(p, "fl_rhythm")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    results: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in arms}

    def one(job: tuple[int, str]) -> None:
        seed, arm = job
        results[arm][seed] = row(run_arm(arm, args, seed))
        f = results[arm][seed]["final"]
        print(f"{arm:18s} seed {seed}: CinC mean F1 {f['macro_f1']:.3f} AF F1 "
              f"{f['af_f1']:.3f}", file=sys.stderr, flush=True)  # fmt: skip

    # seed by seed, arms interleaved: the machine's load falls on every arm alike
    jobs = [(seed, arm) for seed in range(args.seeds) for arm in arms]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, jobs))
    results = {a: dict(sorted(r.items())) for a, r in results.items()}
    chosen = {"record": None, "recipe": RECIPE, "server_step": SERVER_STEP}
    report: dict[str, Any] = {"settings": vars(args) | chosen, "arms": results}
    if "central" in results and "federated" in results:
        report["gap_central_minus_federated"] = gaps(results, "central", "federated")
        report["gap_last5_central_minus_federated"] = gaps(results, "central", "federated", "last5")
    if "federated" in results and "federated_drop30" in results:
        report["gap_federated_minus_drop30"] = gaps(results, "federated", "federated_drop30")
    print(json.dumps(report, indent=1))
    if args.record:
        registry.record(args.record, report, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
