"""Throughput of the edge agent end to end on a 30-minute 360 Hz MIT-BIH record, one core.

Replays the record at max speed through the offline agent (causal filter, streaming QRS
detector, beat windows + RR features, batched int8 ONNX inference with one intra-op thread,
events, SQLite buffer). The process is pinned to one CPU; ``cpu_s`` is process CPU time (all
threads), ``wall_s`` elapsed time (inflated when other jobs share the core). Real-time factor =
record duration / time.

Usage: python bench/edge_throughput.py [--record 100] [--chunk-s 10] [--repeat 3]. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from bench.edge_common import run_record  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", default="100")
    ap.add_argument("--chunk-s", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--repeat", type=int, default=3)
    registry.add_record_argument(ap, "edge_throughput")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    path = dataset_dir("mitdb", os.environ) / args.record
    results = []
    for chunk_s in args.chunk_s:
        runs = [run_record(path, chunk_s=chunk_s) for _ in range(args.repeat)]
        best_cpu = min(r.cpu_s for r in runs)
        best_wall = min(r.wall_s for r in runs)
        duration = runs[0].duration_s
        results.append(
            {
                "chunk_s": chunk_s,
                "record_s": duration,
                "beats": int(runs[0].samples.size),
                "cpu_s": best_cpu,
                "wall_s": best_wall,
                "realtime_factor_cpu": duration / best_cpu,
                "realtime_factor_wall": duration / best_wall,
            }
        )
    out = {
        "bench": "edge_throughput",
        "record": args.record,
        "cores": 1,
        "intra_op_threads": 1,
        "results": results,
        "target_realtime_factor": 1000,
    }
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
