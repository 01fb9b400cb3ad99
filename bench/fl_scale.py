"""A round of many devices through the production service and round engine, in one process
(issue 18 item 2): synthetic devices (cloud_aggregator/scale.py) on the in-memory grid, a real
store. Reports, per round, the wall time split into the devices' share and the aggregator's,
the aggregator's updates per second, the aggregation time and the peak resident memory.

    python bench/fl_scale.py --devices 100000 --rounds 2 [--store postgresql://...] [--record]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from cloud_aggregator.scale import run_rounds  # noqa: E402
from store import open_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0, help="share of devices per round")
    ap.add_argument("--store", default="", help="store URL (default: a fresh SQLite file)")
    registry.add_record_argument(ap, "fl_scale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fl-scale-") as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'store.db'}"
        if url.startswith("postgresql"):  # a throw-away schema
            url += ("&" if "?" in url else "?") + f"schema=flscale_{uuid.uuid4().hex[:8]}"
        store = open_store(url)
        t0 = time.perf_counter()
        try:
            out = run_rounds(store, args.devices, args.rounds, fraction=args.fraction)
        finally:
            if "schema=flscale_" in url:
                store.drop_schema()  # type: ignore[attr-defined]
            store.close()
    result = {"benchmark": "fl_scale", "store": url.split("://")[0], "fraction": args.fraction,
              "wall_s": round(time.perf_counter() - t0, 1), **out}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.record:
        registry.record(args.record, result, sys.argv)


if __name__ == "__main__":
    main()
