"""Heart rate from the decoded 2-hour Polar H10 ECG capture vs the strap's own 1 Hz HR export.

Decodes every frame of ``hr_data_2023-01-13_11-40-07.bin`` with firmware_bridge (per-sample
sensor timestamps), finds R peaks (``common.signals.ecg_findpeaks``; ``--method scipy`` for a
plain ``scipy.signal.find_peaks`` baseline), turns RR intervals into a 1 Hz heart-rate series
and compares it with ``reference_hr_1hz.csv`` (1 Hz HR of a *second* H10 worn at the same
time, from its Polar Flow export). The two clocks are unrelated (the ECG strap's clock had
reset to 2019-01-01; the export has session-relative times), so the offset is estimated by
cross-correlating the two HR series, then refined by minimising the absolute difference.

Prints one JSON object. Run: ``python bench/bridge_h10_hr.py [--method ecg_findpeaks|scipy]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from firmware_bridge.capture import CaptureReader  # noqa: E402
from firmware_bridge.pmd_data import decode_pmd_data  # noqa: E402

FS = 130.0  # nominal H10 ECG rate, Hz
BIN = "hr_data_2023-01-13_11-40-07.bin"
REF = "reference_hr_1hz.csv"
Array = npt.NDArray[np.float64]


def decode_capture(path: Path) -> tuple[Array, Array, dict[str, int]]:
    """ECG (µV) and per-sample times (s from the first sample) of a whole .bin capture."""
    reader = CaptureReader(path)
    values, times = [], []
    prev: int | None = None
    for record in reader:
        frame = decode_pmd_data(record.data)
        values.append(frame.samples[:, 0])
        times.append(frame.sample_times_ns(prev, FS))
        prev = frame.timestamp_ns
    t_ns = np.concatenate(times)
    info = {"frames": len(values), "truncated_records": reader.truncated}
    return np.concatenate(values), (t_ns - t_ns[0]) / 1e9, info


def find_r_peaks(ecg: Array, method: str) -> npt.NDArray[np.int64]:
    """R-peak indices by the chosen method."""
    if method == "ecg_findpeaks":
        from common.signals.peaks import ecg_findpeaks

        return ecg_findpeaks(ecg, FS).astype(np.int64)
    from scipy import signal

    sos = signal.butter(3, [5, 20], btype="bandpass", fs=FS, output="sos")
    energy = signal.sosfiltfilt(sos, ecg) ** 2
    smooth = np.convolve(energy, np.ones(int(0.1 * FS)) / int(0.1 * FS), mode="same")
    height = np.percentile(smooth, 75)
    peaks, _ = signal.find_peaks(smooth, height=height, distance=int(0.3 * FS))
    return peaks.astype(np.int64)


def hr_1hz(r_times: Array, duration_s: float, smooth_s: int) -> Array:
    """1 Hz heart rate (bpm) from R-peak times: instantaneous 60/RR, interpolated, averaged.

    RR outside 0.27-2.0 s (30-220 bpm) or jumping > 30 % from the running median are dropped
    (missed / extra detections); seconds with no valid beat nearby are NaN.
    """
    rr = np.diff(r_times)
    t_mid = r_times[1:]
    ok = (rr > 0.27) & (rr < 2.0)
    med = np.array([np.median(rr[max(0, i - 5) : i + 6]) for i in range(rr.size)])
    ok &= np.abs(rr - med) < 0.3 * med
    grid = np.arange(0, int(duration_s))
    hr = np.interp(grid, t_mid[ok], 60.0 / rr[ok], left=np.nan, right=np.nan)
    # blank seconds farther than 3 s from a valid beat
    beats = t_mid[ok]
    pos = np.clip(np.searchsorted(beats, grid), 1, beats.size - 1)
    nearest = np.minimum(np.abs(grid - beats[pos - 1]), np.abs(beats[pos] - grid))
    hr[nearest > 3] = np.nan
    if smooth_s > 1:
        kernel = np.ones(smooth_s) / smooth_s
        valid = np.isfinite(hr)
        num = np.convolve(np.where(valid, hr, 0.0), kernel, mode="same")
        den = np.convolve(valid.astype(float), kernel, mode="same")
        hr = np.where(den > 0.5, num / np.maximum(den, 1e-9), np.nan)
    return hr


def load_reference(path: Path) -> Array:
    """1 Hz reference HR (bpm) indexed by second since the export's start (NaN where missing)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    secs = []
    for r in rows:
        h, m, s = (int(x) for x in r["time"].split(":"))
        secs.append(h * 3600 + m * 60 + s)
    out = np.full(max(secs) + 1, np.nan)
    out[np.array(secs)] = [float(r["hr_bpm"]) for r in rows]
    return out


def best_offset(ecg_hr: Array, ref_hr: Array) -> tuple[int, float]:
    """Lag L (s) maximising the correlation of ref(t) with ecg(t + L); then MAE refinement."""
    a = np.nan_to_num(ecg_hr - np.nanmean(ecg_hr))
    b = np.nan_to_num(ref_hr - np.nanmean(ref_hr))
    xc = np.correlate(a, b, mode="full")  # index k <-> lag k - (len(b) - 1)
    lags = np.arange(-(b.size - 1), a.size)
    overlap = np.minimum(a.size, lags + b.size) - np.maximum(0, lags)
    xc = np.where(overlap > 0.5 * min(a.size, b.size), xc / np.maximum(overlap, 1), -np.inf)
    lag = int(lags[np.argmax(xc)])
    norm = float(np.max(xc) / (np.std(a) * np.std(b) + 1e-12))
    maes = {d: _compare(ecg_hr, ref_hr, lag + d)["mae_bpm"] for d in range(-5, 6)}
    return min(maes, key=lambda d: maes[d]) + lag, norm


def _compare(ecg_hr: Array, ref_hr: Array, lag: int) -> dict[str, Any]:
    idx = np.arange(ref_hr.size) + lag
    inside = (idx >= 0) & (idx < ecg_hr.size)
    x = ecg_hr[idx[inside]]
    y = ref_hr[inside]
    ok = np.isfinite(x) & np.isfinite(y)
    err = np.abs(x[ok] - y[ok])
    bands = {}
    for lo, hi in ((0, 130), (130, 150), (150, 250)):
        sel = (y[ok] >= lo) & (y[ok] < hi)
        bands[f"{lo}-{hi}"] = {
            "n_s": int(sel.sum()),
            "mae_bpm": float(err[sel].mean()) if sel.any() else None,
        }
    return {
        "n_compared_s": int(ok.sum()),
        "mae_bpm": float(err.mean()),
        "median_ae_bpm": float(np.median(err)),
        "p95_ae_bpm": float(np.percentile(err, 95)),
        "within_5bpm_pct": float(100 * np.mean(err <= 5)),
        "bias_bpm": float(np.mean(x[ok] - y[ok])),
        "pearson_r": float(np.corrcoef(x[ok], y[ok])[0, 1]),
        "mae_by_reference_hr_bpm": bands,
    }


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 3)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def signals_version() -> str:
    """Commit of common/signals (the detector under test), with ``+dirty`` if modified."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", "common/signals"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "common/signals"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--method", choices=["ecg_findpeaks", "scipy", "all"], default="all", help="R-peak detector"
    )
    registry.add_record_argument(parser, "bridge_h10_hr")
    parser.add_argument("--smooth", type=int, default=5, help="moving average of the ECG HR, s")
    args = parser.parse_args()
    folder = dataset_dir("polar_h10_ble_captures", os.environ)
    start = time.perf_counter()
    ecg, t, info = decode_capture(folder / BIN)
    decode_s = time.perf_counter() - start
    ref = load_reference(folder / REF)
    methods = ["ecg_findpeaks", "scipy"] if args.method == "all" else [args.method]
    results: dict[str, Any] = {}
    for method in methods:
        peaks = find_r_peaks(ecg, method)
        hr = hr_1hz(t[peaks], float(t[-1]), args.smooth)
        lag, xcorr = best_offset(hr, ref)
        results[method] = {
            "beats": int(peaks.size),
            "offset_s": lag,
            "xcorr_normalised": xcorr,
            **_compare(hr, ref, lag),
        }
    result = {
        "bench": "bridge_h10_hr",
        "common_signals": signals_version(),
        "smooth_s": args.smooth,
        **info,
        "samples": int(ecg.size),
        "duration_s": float(t[-1]),
        "fs_measured_hz": (ecg.size - 1) / float(t[-1]),
        "reference_s": int(np.isfinite(ref).sum()),
        "decode_s": decode_s,
        "decode_frames_per_s": info["frames"] / decode_s,
        "offset_note": "reference second k is compared with ECG second k + offset_s "
        "(cross-correlation of the two 1 Hz HR series, refined +-5 s by MAE)",
        "methods": results,
        "elapsed_s": time.perf_counter() - start,
    }
    print(json.dumps(_rounded(result)))
    if args.record:
        registry.record(args.record, _rounded(result), sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
