"""Rounds of many devices through the production service and round engine (issue 18 item 2).

``--grid memory`` (default): synthetic devices (cloud_aggregator/scale.py) on the in-memory
grid in this process, a real store; per round the wall time split into the devices' share and
the aggregator's, the aggregator's updates per second, aggregation time and peak memory.

``--grid mqtt``: the devices over a private Mosquitto on loopback, each with its own MQTT
connection, in ``--processes`` fleet processes (tests/support/mqtt_fleet.py); the aggregator's
service in this process. Reports the time until all are online, per round the wall time and
updates per second, and this (the aggregator's) process's peak memory.

    python bench/fl_scale.py --devices 100000 --rounds 2 [--store postgresql://...] [--record]
    python bench/fl_scale.py --grid mqtt --devices 10000 --rounds 2 --record fl_scale_mqtt
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
    ap.add_argument("--grid", choices=("memory", "mqtt"), default="memory")
    ap.add_argument("--processes", type=int, default=4, help="fleet processes (--grid mqtt)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="give up after, s")
    registry.add_record_argument(ap, "fl_scale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fl-scale-") as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'store.db'}"
        if url.startswith("postgresql"):  # a throw-away schema
            url += ("&" if "?" in url else "?") + f"schema=flscale_{uuid.uuid4().hex[:8]}"
        store = open_store(url)
        t0 = time.perf_counter()
        try:
            if args.grid == "memory":
                out = run_rounds(store, args.devices, args.rounds, fraction=args.fraction,
                                 max_seconds=args.timeout)  # fmt: skip
            else:
                from tests.support.mqtt_fleet import run_rounds_over_broker

                out = run_rounds_over_broker(store, args.devices, args.rounds,
                                             processes=args.processes, timeout_s=args.timeout)  # fmt: skip
        finally:
            if "schema=flscale_" in url:
                store.drop_schema()  # type: ignore[attr-defined]
            store.close()
    result = {"benchmark": "fl_scale", "grid": args.grid, "store": url.split("://")[0],
              "fraction": args.fraction,
              "wall_s": round(time.perf_counter() - t0, 1), **out}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.record:
        registry.record(args.record, result, sys.argv)


if __name__ == "__main__":
    main()
