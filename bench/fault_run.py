"""Fault run: devices replay MIT-BIH in real time while the aggregator, the broker and the web
are killed with SIGKILL, PostgreSQL is stopped for 20 s and a hostile device sprays malformed
payloads and poisons rounds (tests/support/fault_run.py). Prints one JSON object: beats
produced and stored per device, labels sent and acknowledged, updates double-counted, rounds
closed/failed/lost, aggregator restarts forced by input.

    python bench/fault_run.py                      # 4 devices, 10 minutes
    python bench/fault_run.py --minutes 2 --records 208,119
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from tests.support.datasets import require_data  # noqa: E402
from tests.support.fault_run import FaultRun  # noqa: E402


def schedule(minutes: float) -> list[tuple[float, str]]:
    """Each fault once per ~2.5 minutes, spread over the run and clear of its last minute."""
    span = max(60.0, minutes * 60 - 60)
    kinds = ["kill_aggregator", "stop_postgres", "kill_broker", "kill_web"]
    n = max(1, int(minutes / 2.5))
    events = [(span * (i + 0.5) / (n * len(kinds)), kinds[i % len(kinds)])
              for i in range(n * len(kinds))]  # fmt: skip
    return events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--records", default="208,119,201,203", help="one device per record")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    registry.add_record_argument(ap, "fault_run")
    args = ap.parse_args()
    # the clinician's store connection fails on purpose while PostgreSQL is down
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    root = require_data("mitdb")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medchain-faults-"))
    run = FaultRun(work, root, tuple(args.records.split(",")), args.minutes * 60,
                   schedule(args.minutes))  # fmt: skip
    report = run.run()
    print(json.dumps({"workdir": str(work), **report.as_dict()}, indent=1))
    if args.record:
        run_args = {"minutes": args.minutes, "records": args.records.split(",")}
        registry.record(args.record, {**run_args, **report.as_dict()}, sys.argv)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
