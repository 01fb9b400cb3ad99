"""PPG heart-rate benchmark on IEEE SPC 2015 (TROIKA data): MAE vs the ECG reference per recording.

Run: ``/work/venv/bin/python bench/ppg_hr.py`` (prints JSON). TROIKA reported 2.34 bpm mean MAE
on the 12 training recordings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io as sio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from common.signals.ppg import ppg_rate  # noqa: E402

FS = 125.0


def _mae(est: np.ndarray, ref: np.ndarray) -> float:
    n = min(est.size, ref.size)
    return float(np.mean(np.abs(est[:n] - ref[:n])))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    registry.add_record_argument(ap, "ppg_hr")
    args = ap.parse_args()
    root = dataset_dir("spc2015_wrist_ppg_acc", os.environ)
    result: dict[str, dict[str, float]] = {"training": {}, "test": {}}
    n_windows, busy_s = 0, 0.0
    single: list[float] = []  # PPG channel 1 only (most wearables have one)
    for path in sorted((root / "training").glob("DATA_*_TYPE0?.mat")):
        sig = sio.loadmat(path)["sig"]
        ref = sio.loadmat(path.with_name(path.stem + "_BPMtrace.mat"))["BPM0"].ravel()
        t0 = time.perf_counter()
        est = ppg_rate(sig[1:3].T, sig[3:6].T, FS)
        busy_s += time.perf_counter() - t0
        n_windows += est.size
        result["training"][path.stem] = round(_mae(est, ref), 3)
        single.append(_mae(ppg_rate(sig[1], sig[3:6].T, FS), ref))
    for path in sorted((root / "test").glob("TEST_*.mat")):
        sig = sio.loadmat(path)["sig"]
        ref = sio.loadmat(path.with_name(path.name.replace("TEST_", "True_")))["BPM0"].ravel()
        est = ppg_rate(sig[0:2].T, sig[2:5].T, FS)
        result["test"][path.stem] = round(_mae(est, ref), 3)
    summary = {
        "training_mean_mae_bpm": round(float(np.mean(list(result["training"].values()))), 3),
        "test_mean_mae_bpm": round(float(np.mean(list(result["test"].values()))), 3),
        "all_mean_mae_bpm": round(
            float(np.mean([*result["training"].values(), *result["test"].values()])), 3
        ),
        "troika_training_mean_mae_bpm": 2.34,
        "training_mean_mae_bpm_single_ppg_channel": round(float(np.mean(single)), 3),
        "ms_per_8s_window": round(1000 * busy_s / max(n_windows, 1), 3),
    }
    out = {"per_recording_mae_bpm": result, **summary}
    print(json.dumps(out, indent=2))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
