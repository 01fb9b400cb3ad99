"""int8 onnxruntime vs torch fp32 eager on the same batches, side by side in one run.

    python bench/models_speed.py --run runs/beat        # needs student.pt and beat.onnx

onnxruntime runs with ``intra_op_num_threads=1`` (the edge setting); torch eager with 1 thread
(same budget) and with 2 threads. Inputs are real MIT-BIH beats (record 100, DS2). Prints one
JSON object: median latency per batch in ms and the speed ratio torch / int8 per batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common.datasets import default_cache_dir
from models.predict import load_checkpoint, onnx_feed, onnx_session
from models.tasks import LoadOptions, get_task


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in ms; runs interleave with other work on a shared machine, so the
    median (not the mean) and several repeats keep the number stable."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="folder of `medchain train` output")
    parser.add_argument("--task", default="beat")
    parser.add_argument("--record", default="100")
    parser.add_argument("--batches", default="1,32,256,2048")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    run = Path(args.run)
    task = get_task(args.task)
    opts = LoadOptions(
        env=os.environ,
        records=[args.record] if args.task == "beat" else None,
        cache_dir=default_cache_dir(os.environ) / "preprocessed",
    )
    data = task.load(task.test_split, opts)
    net = load_checkpoint(run / "student.pt")
    fp32 = onnx_session(run / f"{task.name}_fp32.onnx", threads=1)
    int8 = onnx_session(run / f"{task.name}.onnx", threads=1)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        part = data.subset(np.arange(batch) % len(data))
        feed = onnx_feed(int8, part)
        signal, feats = torch.from_numpy(part.signal), torch.from_numpy(part.features)

        def run_torch(s: torch.Tensor = signal, f: torch.Tensor = feats) -> object:
            with torch.no_grad():
                return net(s, f)

        row: dict[str, float | int] = {"batch": batch}
        row["int8_ort_1t_ms"] = median_ms(lambda f=feed: int8.run(["probs"], f), args.repeats)
        row["fp32_ort_1t_ms"] = median_ms(lambda f=feed: fp32.run(["probs"], f), args.repeats)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            row[f"torch_fp32_{threads}t_ms"] = median_ms(run_torch, args.repeats)
        row["speedup_int8_vs_torch_1t"] = row["torch_fp32_1t_ms"] / row["int8_ort_1t_ms"]
        row["speedup_int8_vs_torch_2t"] = row["torch_fp32_2t_ms"] / row["int8_ort_1t_ms"]
        results.append(row)
    sizes = {p.name: p.stat().st_size for p in run.glob(f"{task.name}*.onnx")}
    print(
        json.dumps({"task": task.name, "run": str(run), "sizes_bytes": sizes, "results": results})
    )


if __name__ == "__main__":
    main()
