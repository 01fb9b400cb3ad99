"""Resident memory of the inference-only edge agent, measured in a fresh subprocess.

The child runs ``medchain edge`` offline (no broker) over a 30-minute MIT-BIH replay at max
speed, with the packaged int8 model, and reports its peak RSS (``ru_maxrss``) and whether torch
was imported. Target: <= 150 MB.

Usage: python bench/edge_memory.py [--source SPEC ...] (default: the MIT-BIH record 100 WFDB
replay, which also loads wfdb/pandas, and the Polar H10 capture replay, the deployment path
without wfdb). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402

CHILD = r"""
import json, resource, sys
from medchain.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "torch_imported": "torch" in sys.modules, "wfdb_imported": "wfdb" in sys.modules,
                  "scipy_signal_imported": "scipy.signal" in sys.modules,
                  "modules": len(sys.modules)}), file=sys.stderr)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", nargs="+", help="source specs (default: see module docstring)")
    registry.add_record_argument(ap, "edge_memory")
    args = ap.parse_args()
    h10 = dataset_dir("polar_h10_ble_captures", os.environ) / "hr_data_2023-01-13_11-40-07.bin"
    sources = args.source or [
        f"replay:{dataset_dir('mitdb', os.environ) / '100'}",
        f"replay:{h10}",
    ]
    results = []
    for spec in sources:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-c",
                CHILD,
                "edge",
                "--source",
                spec,
                "--speed",
                "max",
                "--buffer",
                str(Path(tmp) / "b.sqlite"),
                "--out",
                str(Path(tmp) / "o.jsonl"),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        last = [line for line in proc.stderr.splitlines() if line.startswith("{")][-1]
        child = json.loads(last)
        stats = json.loads(proc.stdout)
        rss = child["maxrss_kb"] / 1024
        results.append(
            {
                "source": spec,
                "peak_rss_mb": round(rss, 1),
                "torch_imported": child["torch_imported"],
                "wfdb_imported": child["wfdb_imported"],
                "scipy_signal_imported": child["scipy_signal_imported"],
                "beats": stats["beats"],
                "ok": rss <= 150 and not child["torch_imported"],
            }
        )
    out = {"bench": "edge_memory", "target_mb": 150, "results": results}
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
