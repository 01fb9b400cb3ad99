"""QRS detection on MIT-BIH (EC57 style): per-record TP/FP/FN, gross Se/+P, speed, as JSON.

Usage::

    /work/venv/bin/python bench/qrs_detection.py                 # all 48 records, 1-s chunks
    /work/venv/bin/python bench/qrs_detection.py --records 105 108 --rate 128

The detector runs as on the device (``QRSDetector.process`` on chunks of ``--chunk-s`` seconds,
then ``flush``) on channel 0 (MLII) in µV. Reference = beat annotations. Scoring follows
ANSI/AAMI EC57: one-to-one matching within ``--tolerance-ms``; the first and last
``--skip-s`` seconds and ventricular flutter/fibrillation episodes (``[`` ... ``]``) are not
scored. ``--rate`` resamples the record (and maps the annotations) to test other device rates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from common.signals.align import align_r_peaks  # noqa: E402
from common.signals.filters import ecg_clean  # noqa: E402
from common.signals.matching import match_peaks  # noqa: E402
from common.signals.peaks import QRSDetector  # noqa: E402
from common.signals.resample import map_indices, resample_signal  # noqa: E402

RECORDS = [
    *map(str, range(100, 110)),
    *map(str, range(111, 120)),
    *map(str, range(121, 125)),
    "200", "201", "202", "203", "205", "207", "208", "209", "210", "212", "213", "214", "215",
    "217", "219", "220", "221", "222", "223", "228", "230", "231", "232", "233", "234",
]  # fmt: skip
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def load(record: str, data: Path) -> tuple[np.ndarray, float, np.ndarray, list[tuple[int, int]]]:
    """Channel-0 ECG (µV), rate (Hz), reference beat samples, excluded VF intervals."""
    signal, fs, beats, _, excluded = load_with_symbols(record, data)
    return signal, fs, beats, excluded


def load_with_symbols(
    record: str, data: Path
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """As :func:`load`, plus the annotation symbol of every reference beat."""
    import wfdb

    rec = wfdb.rdrecord(str(data / record), channels=[0])
    ann = wfdb.rdann(str(data / record), "atr")
    signal = rec.p_signal[:, 0] * 1000.0
    symbols = np.array(ann.symbol)
    samples = np.asarray(ann.sample, dtype=np.int64)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    beats, beat_symbols = samples[is_beat], symbols[is_beat]
    excluded: list[tuple[int, int]] = []
    start = None
    for s, sym in zip(samples.tolist(), symbols.tolist(), strict=True):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            excluded.append((start, s))
            start = None
    if start is not None:
        excluded.append((start, signal.size))
    return signal, float(rec.fs), beats, beat_symbols, excluded


def alignment_counts(
    signal: np.ndarray,
    fs: float,
    det: np.ndarray,
    ref: np.ndarray,
    symbols: np.ndarray,
    window_s: float,
) -> dict[str, list[int]]:
    """Per beat symbol: [matched beats, |det - ref| > 8 ms, same after align_r_peaks of both]."""
    cleaned = ecg_clean(signal, fs)
    limit = 0.008 * fs
    raw = np.abs(det - ref) > limit
    aligned = (
        np.abs(
            align_r_peaks(cleaned, fs, det, window_s) - align_r_peaks(cleaned, fs, ref, window_s)
        )
        > limit
    )
    return {
        str(sym): [
            int((symbols == sym).sum()),
            int(raw[symbols == sym].sum()),
            int(aligned[symbols == sym].sum()),
        ]
        for sym in np.unique(symbols)
    }


def scored(idx: np.ndarray, n: int, skip: int, excluded: list[tuple[int, int]]) -> np.ndarray:
    keep = (idx >= skip) & (idx < n - skip)
    for a, b in excluded:
        keep &= ~((idx >= a) & (idx <= b))
    return keep


def run_record(record: str, args: argparse.Namespace, data: Path) -> dict[str, object]:
    signal, fs, ref, symbols, excluded = load_with_symbols(record, data)
    if args.rate and args.rate != fs:
        signal = resample_signal(signal, fs, args.rate)
        ref = map_indices(ref, fs, args.rate)
        excluded = [(int(a * args.rate / fs), int(b * args.rate / fs)) for a, b in excluded]
        fs = float(args.rate)
    chunk = max(1, int(round(args.chunk_s * fs))) if args.chunk_s > 0 else signal.size
    det = QRSDetector(fs)
    parts: list[np.ndarray] = []
    latency: list[np.ndarray] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, signal.size, chunk):
        out = det.process(signal[i : i + chunk])
        parts.append(out)
        latency.append((min(i + chunk, signal.size) - out) / fs)
    parts.append(det.flush())
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    found = np.concatenate(parts)
    # Delay from the R peak to the end of the chunk that reported it (after the learning period).
    lat = np.concatenate(latency) if latency else np.zeros(0)
    lat = lat[np.concatenate(parts[:-1]) >= det.params.learning_s * fs] if lat.size else lat
    tol = int(round(args.tolerance_ms * fs / 1000.0))
    m = match_peaks(found, ref, tol)
    skip = int(round(args.skip_s * fs))
    ref_in = scored(ref, signal.size, skip, excluded)
    det_in = scored(found, signal.size, skip, excluded)
    matched_ref = np.zeros(ref.size, dtype=bool)
    matched_ref[m.matched_reference] = True
    matched_det = np.zeros(found.size, dtype=bool)
    matched_det[m.matched_detected] = True
    tp = int((matched_ref & ref_in).sum())
    fn = int((~matched_ref & ref_in).sum())
    fp = int((~matched_det & det_in).sum())
    offsets = (found[m.matched_detected] - ref[m.matched_reference]) * 1000.0 / fs
    return {
        "record": record,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "se": round(100.0 * tp / max(tp + fn, 1), 3),
        "ppv": round(100.0 * tp / max(tp + fp, 1), 3),
        "offset_ms_median": round(float(np.median(offsets)), 2) if offsets.size else None,
        "offset_ms_p95_abs": round(float(np.percentile(np.abs(offsets), 95)), 2)
        if offsets.size
        else None,
        "samples": int(signal.size),
        "seconds": round(elapsed, 4),
        "cpu_seconds": round(cpu, 4),
        "latency_s_p50": round(float(np.median(lat)), 3) if lat.size else None,
        "latency_s_p99": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "latency_s_max": round(float(lat.max()), 3) if lat.size else None,
        "alignment": alignment_counts(
            signal,
            fs,
            found[m.matched_detected],
            ref[m.matched_reference],
            symbols[m.matched_reference],
            args.align_window_s,
        )
        if args.align_window_s > 0
        else None,
        "fn_samples": ref[~matched_ref & ref_in].tolist() if args.list_errors else None,
        "fp_samples": found[~matched_det & det_in].tolist() if args.list_errors else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", nargs="*", default=RECORDS, help="records (default: all 48)")
    parser.add_argument("--tolerance-ms", type=float, default=150.0, help="match window (ms)")
    parser.add_argument("--skip-s", type=float, default=1.0, help="unscored start/end (s)")
    parser.add_argument("--chunk-s", type=float, default=1.0, help="stream chunk (s); 0 = whole")
    parser.add_argument("--rate", type=float, default=0.0, help="resample to this rate (Hz)")
    parser.add_argument(
        "--align-window-s",
        type=float,
        default=0.0,
        help="also count matched beats whose detected and annotated positions differ by > 8 ms, "
        "before and after align_r_peaks with this window (s)",
    )
    parser.add_argument("--list-errors", action="store_true", help="list FN/FP sample indices")
    registry.add_record_argument(parser, "qrs_detection")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    data = dataset_dir("mitdb", os.environ)
    from tqdm import tqdm

    results = []
    for record in tqdm(args.records, desc="QRS", unit="rec", disable=args.quiet, file=sys.stderr):
        results.append(run_record(record, args, data))
    tp = sum(int(r["tp"]) for r in results)  # type: ignore[call-overload]
    fp = sum(int(r["fp"]) for r in results)  # type: ignore[call-overload]
    fn = sum(int(r["fn"]) for r in results)  # type: ignore[call-overload]
    samples = sum(int(r["samples"]) for r in results)  # type: ignore[call-overload]
    seconds = sum(float(r["seconds"]) for r in results)  # type: ignore[arg-type]
    cpu = sum(float(r["cpu_seconds"]) for r in results)  # type: ignore[arg-type]
    rate = float(args.rate) if args.rate else 360.0
    summary: dict[str, object] = {
        "records": len(results),
        "tolerance_ms": args.tolerance_ms,
        "skip_s": args.skip_s,
        "chunk_s": args.chunk_s,
        "rate_hz": rate,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "se_percent": round(100.0 * tp / max(tp + fn, 1), 3),
        "ppv_percent": round(100.0 * tp / max(tp + fp, 1), 3),
        "detector_samples_per_s": round(samples / seconds) if seconds else None,
        "detector_x_realtime": round(samples / rate / seconds) if seconds else None,
        "detector_x_realtime_cpu": round(samples / rate / cpu) if cpu else None,
        "latency_s_p50_median": float(np.median([r["latency_s_p50"] for r in results])),
        "latency_s_p99_max": max(float(r["latency_s_p99"]) for r in results),  # type: ignore[arg-type]
        "latency_s_max": max(float(r["latency_s_max"]) for r in results),  # type: ignore[arg-type]
    }
    if args.align_window_s > 0:
        table: dict[str, list[int]] = {}
        for r in results:
            for sym, counts in r["alignment"].items():  # type: ignore[union-attr]
                table[sym] = [a + b for a, b in zip(table.get(sym, [0, 0, 0]), counts, strict=True)]
        total = [sum(v[i] for v in table.values()) for i in range(3)]
        summary["alignment"] = {
            "window_s": args.align_window_s,
            "beats": total[0],
            "over_8ms_raw_percent": round(100.0 * total[1] / max(total[0], 1), 2),
            "over_8ms_aligned_percent": round(100.0 * total[2] / max(total[0], 1), 2),
            "per_symbol": {
                k: {
                    "beats": v[0],
                    "raw_percent": round(100.0 * v[1] / v[0], 1),
                    "aligned_percent": round(100.0 * v[2] / v[0], 1),
                }
                for k, v in sorted(table.items())
            },
        }
    for r in results:
        r.pop("alignment")
        if not args.list_errors:
            r.pop("fn_samples")
            r.pop("fp_samples")
    out = {"summary": summary, "per_record": results}
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
