"""Decoder throughput: real H10 ECG frames, delta-compressed ACC, HRS, and the stream assembler.

Prints one JSON object (µs per notification and notifications per second, best of 3 runs).
Run: ``python bench/bridge_decode.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from firmware_bridge.capture import CaptureReader  # noqa: E402
from firmware_bridge.decode_stream import StreamAssembler  # noqa: E402
from firmware_bridge.gatt import PMD_DATA_UUID  # noqa: E402
from firmware_bridge.hrs import decode_heart_rate  # noqa: E402
from firmware_bridge.pmd_data import decode_pmd_data  # noqa: E402

# Polar SDK AccDataTest "compressed type 0" body: 57 samples x 3 axes, 10-bit deltas
ACC_DELTA = bytes.fromhex(
    "02009435770000000080"
    "7107F06A9E8D0A38BE5CBEBA2F96B3EE4BE5ADFB42B9EBBE4CFEBA2F92BFEE4BE4B1FB12B9ECBD3C3EBB2F"
    "8FD3DE4BE3B5F7D2B8EDBD307E7B2F8BE3CE8BE2BAF7A2B8EEBC20BE7B2F88F3CECBE1BDEF52F8EFBC18FE"
    "3B2F8403BFCBE0C2EF32B8F0BB044EBC2E8113AF0BE0C6EFF2F7F1B9FC7DBC2E7D279F4BDFCAEBC2F7F2B8"
    "ECCD7C2E7B378F4BDECEE392F7F3B8E00DFD2D774B7FCBDDD2DF6237F5B7D44DBD2D745B6FCBDCD7D73237"
    "F6B5C88D7D2D716B4F4BDCDCD3F236F7B4BCDDFD2C6F7B3F4BDBE0CFD236F8B2B02DBE2C6C8F1FCBDAE3C7"
    "A276F9"
)
HRS = bytes.fromhex("164854 01EC02".replace(" ", ""))


def best_us(fn: Callable[[], int]) -> tuple[float, int]:
    """Best-of-3 wall time per item in µs, and the item count."""
    times = []
    n = 0
    for _ in range(3):
        start = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - start)
    return min(times) / n * 1e6, n


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    registry.add_record_argument(ap, "bridge_decode")
    args = ap.parse_args()
    path = dataset_dir("polar_h10_ble_captures", os.environ) / "hr_data_2023-01-13_11-40-07.bin"
    frames = [r.data for r in CaptureReader(path)]

    def ecg() -> int:
        for f in frames:
            decode_pmd_data(f)
        return len(frames)

    def acc() -> int:
        for _ in range(2000):
            decode_pmd_data(ACC_DELTA, factor=2.44e-4)
        return 2000

    def hrs() -> int:
        for _ in range(20000):
            decode_heart_rate(HRS)
        return 20000

    def assembler() -> int:
        asm = StreamAssembler()
        for f in frames:
            asm.feed(PMD_DATA_UUID, f)
        return len(frames)

    out: dict[str, object] = {"bench": "bridge_decode"}
    for name, fn in (
        ("ecg_h10_real", ecg),
        ("acc_delta_57x3", acc),
        ("hrs", hrs),
        ("assembler_ecg", assembler),
    ):
        us, n = best_us(fn)
        out[name] = {"n": n, "us_per_notification": round(us, 2), "per_s": round(1e6 / us)}
    print(json.dumps(out))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
