"""Would a signal-quality gate remove the VT-run false positives on the noisy H10 capture?

Candidate gate, per detected beat, on the model's band-passed ECG (card filter): a beat is
"noisy" if the kurtosis of the +-1 s segment around it is below ``k`` (clean ECG is peaky,
kurtosis 5-12) or its QRS peak-to-peak amplitude (+-60 ms) is outside [1/2, 2] x the median of
the previous 16 beats. A VT run then needs >= 3 consecutive V beats none of which is noisy.

Reports (JSON): vt runs on the Polar H10 cycling capture (agent labels) with and without the
gate and the share of N / V beats flagged; and, on the MIT-BIH records with ventricular runs,
how many *annotated* runs of >= 3 V beats (true runs) the same gate would suppress.

Usage: python bench/edge_vt_gate.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import results as registry  # noqa: E402
from bench.edge_common import ListSink  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from common.model_card import card_path_for, load_card  # noqa: E402
from common.signals.filters import EcgFilter  # noqa: E402
from edge_agent.app import (  # noqa: E402
    DEFAULT_MODEL,
    beat_spec_from_card,
    build_agent,
    load_classifier,  # noqa: E402
)
from edge_agent.config import EdgeSettings  # noqa: E402
from firmware_bridge.capture_replay import CaptureReplaySource  # noqa: E402

KURTOSIS = (3.0, 4.0)
VT_RECORDS = ("106", "200", "203", "205", "207", "210", "213", "214", "215", "221", "223", "233")


def quality(y: npt.NDArray[np.float64], peaks: npt.NDArray[np.int64], fs: float) -> Any:
    """(kurtosis of +-1 s, QRS amplitude / median of the previous 16) per beat, shape (n, 2)."""
    half, qrs = int(fs), int(0.06 * fs)
    out, amps = [], []
    for p in peaks.tolist():
        seg = y[max(0, p - half) : p + half]
        kurt = float(((seg - seg.mean()) ** 4).mean() / max(seg.var(), 1e-12) ** 2)
        w = y[max(0, p - qrs) : p + qrs + 1]
        amps.append(float(w.max() - w.min()))
        med = float(np.median(amps[-17:-1])) if len(amps) > 4 else amps[-1]
        out.append((kurt, amps[-1] / max(med, 1e-9)))
    return np.array(out)


def runs(labels: list[str], noisy: npt.NDArray[np.bool_], min_beats: int = 3) -> int:
    """Runs of >= ``min_beats`` consecutive clean V beats."""
    n = cur = 0
    for lab, bad in zip(labels, noisy.tolist(), strict=True):
        if lab == "V" and not bad:
            cur += 1
        else:
            n, cur = n + (cur >= min_beats), 0
    return n + (cur >= min_beats)


def gate(q: Any, k: float) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (q[:, 0] < k) | (q[:, 1] > 2.0) | (q[:, 1] < 0.5)
    return out


async def capture_run(path: Path) -> tuple[npt.NDArray[np.float64], int, list[Any], dict[str, int]]:
    """The capture through the offline agent: raw ECG (µV), its first stream index, beats,
    events by kind."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = EdgeSettings(client_id="bench", buffer_path=Path(tmp) / "b.sqlite")
        agent = build_agent(settings, load_classifier(settings))
        sink = ListSink()
        agent.sink = sink
        stats = await agent.run(CaptureReplaySource(path, speed=None))
        agent.close()
    chunks = [c async for c in CaptureReplaySource(path, speed=None).chunks()]
    for a, b in zip(chunks, chunks[1:], strict=False):
        if b.seq != a.seq + a.samples.shape[0]:
            raise SystemExit(f"capture has a gap at seq {b.seq}: sample mapping needs care")
    x = np.concatenate([c.samples[:, 0] for c in chunks])
    return x, chunks[0].seq, sink.beats, dict(stats.events_by_kind)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    registry.add_record_argument(ap, "edge_vt_gate")
    args = ap.parse_args()
    spec = beat_spec_from_card(load_card(card_path_for(DEFAULT_MODEL)))
    h10 = dataset_dir("polar_h10_ble_captures", os.environ) / "hr_data_2023-01-13_11-40-07.bin"
    x, seq0, beats, events = asyncio.run(capture_run(h10))
    fs = 130.0  # H10 ECG rate
    y = EcgFilter(fs, spec.filter).process(x)
    labels = [b.label for b in beats]
    q = quality(y, np.array([b.sample for b in beats], np.int64) - seq0, fs)
    lab = np.array(labels)
    capture: dict[str, Any] = {"vt_run_events": events.get("vt_run", 0)}
    capture["runs_no_gate"] = runs(labels, np.zeros(len(labels), bool))
    for k in KURTOSIS:
        noisy = gate(q, k)
        capture[f"kurtosis<{k}"] = {
            "runs": runs(labels, noisy),
            "n_flagged_pct": round(100 * float(noisy[lab == "N"].mean()), 2),
            "v_flagged_pct": round(100 * float(noisy[lab == "V"].mean()), 1),
        }
    import wfdb  # WFDB reader, bench only

    mitdb = dataset_dir("mitdb", os.environ)
    true_runs = {"no_gate": 0} | {f"kurtosis<{k}": 0 for k in KURTOSIS}
    for rec in VT_RECORDS:
        r = wfdb.rdrecord(str(mitdb / rec), channels=[0])
        a = wfdb.rdann(str(mitdb / rec), "atr")
        keep = np.isin(a.symbol, list("NLRejAaJSVEF/fQ"))
        sym = np.array(a.symbol)[keep]
        rlab = ["V" if c in "VE" else "N" for c in sym]
        yq = EcgFilter(float(r.fs), spec.filter).process(r.p_signal[:, 0] * 1000.0)
        rq = quality(yq, a.sample[keep], float(r.fs))
        true_runs["no_gate"] += runs(rlab, np.zeros(len(rlab), bool))
        for k in KURTOSIS:
            true_runs[f"kurtosis<{k}"] += runs(rlab, gate(rq, k))
    out = {"bench": "edge_vt_gate", "h10_capture": capture, "mitdb_annotated_runs": true_runs}
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
