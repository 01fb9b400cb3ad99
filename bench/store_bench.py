"""Store benchmark: edge predictions in (rows/s, single and batched, one and several writers)
and a round's updates out (MB/s), PostgreSQL and SQLite side by side. Prints JSON.

Usage::

    /work/venv/bin/python bench/store_bench.py                # defaults, all backends
    /work/venv/bin/python bench/store_bench.py --clients 100 --rows-per-client 500 --out r.json

Each backend gets a fresh database (a temporary SQLite file; a throw-away PostgreSQL schema that
is dropped afterwards). Data are seeded and synthetic (beat predictions shaped like the edge's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import results as registry  # noqa: E402
from common.types import BeatPrediction  # noqa: E402
from store import Store, open_store  # noqa: E402

SEC = 1_000_000_000
LABELS = "NNNNNNNNSVF"


def make_beats(client: str, n: int, seed: int) -> list[BeatPrediction]:
    """``n`` predictions of one client, one per ~0.8 s, as the edge sends them."""
    rng = random.Random(seed)
    t = 1_800_000_000 * SEC
    out = []
    for i in range(n):
        t += int(rng.uniform(0.6, 1.0) * SEC)
        lab = rng.choice(LABELS)
        p = rng.uniform(0.5, 1.0)
        probs = {k: (p if k == lab else (1 - p) / 4) for k in "NSVFQ"}
        out.append(BeatPrediction(client, t, i * 288, lab, probs, "7", rng.uniform(0.6, 1.0)))
    return out


@contextmanager
def fresh_store(backend: str, pg_url: str) -> Iterator[Store]:
    """A new empty, migrated store of ``backend``; removed afterwards."""
    if backend.startswith("sqlite"):
        sync = "normal" if backend == "sqlite-normal" else "full"
        with tempfile.TemporaryDirectory(prefix="medchain-bench-") as tmp:
            store = open_store(f"sqlite:///{tmp}/bench.db?synchronous={sync}")
            try:
                yield store
            finally:
                store.close()
        return
    schema = f"medchain_bench_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in pg_url else "?"
    store = open_store(f"{pg_url}{sep}schema={schema}")
    try:
        yield store
    finally:
        drop = getattr(store, "drop_schema", None)
        if drop is not None:
            drop()
        store.close()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_predictions(
    store: Store, url_for_threads: Callable[[], Store], args: argparse.Namespace
) -> dict[str, float]:
    """rows/s: one row per call, batches of --batch, and --writers threads batching at once."""
    clients = [f"edge-{i:04d}" for i in range(args.clients)]
    single_rows = make_beats("single", args.single_rows, 1)
    single_s = timed(lambda: [store.insert_predictions([b]) for b in single_rows])

    per_client = {c: make_beats(c, args.rows_per_client, i + 10) for i, c in enumerate(clients)}
    batches = [
        per_client[c][k : k + args.batch]
        for k in range(0, args.rows_per_client, args.batch)
        for c in clients
    ]  # interleaved: many clients sending in turn, as the MQTT consumer sees them
    n_batched = sum(len(b) for b in batches)
    batched_s = timed(lambda: [store.insert_predictions(b) for b in batches])
    redelivery_s = timed(
        lambda: [store.insert_predictions(b) for b in batches[: len(batches) // 4]]
    )
    n_redelivered = sum(len(b) for b in batches[: len(batches) // 4])

    # Several writers (aggregator replicas / consumer threads), each with its own store.
    extra = {c: make_beats(c + "-w", args.rows_per_client, 99) for c in clients}
    work = [
        extra[c][k : k + args.batch]
        for k in range(0, args.rows_per_client, args.batch)
        for c in clients
    ]
    shards = [work[i :: args.writers] for i in range(args.writers)]
    stores = [url_for_threads() for _ in range(args.writers)]
    barrier = threading.Barrier(args.writers + 1)

    def run(i: int) -> None:
        barrier.wait()
        for b in shards[i]:
            stores[i].insert_predictions(b)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.writers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    multi_s = time.perf_counter() - t0
    for s in stores:
        s.close()
    n_multi = sum(len(b) for b in work)

    last = store.latest_predictions(clients[0], 100)
    assert len(last) == 100, "predictions missing"
    return {
        "single_rows": len(single_rows),
        "single_rows_per_s": round(len(single_rows) / single_s, 1),
        "batched_rows": n_batched,
        "batch_size": args.batch,
        "batched_rows_per_s": round(n_batched / batched_s, 1),
        "redelivered_rows_per_s": round(n_redelivered / redelivery_s, 1),
        "writers": args.writers,
        "multi_writer_rows_per_s": round(n_multi / multi_s, 1),
        "latest_100_ms": round(
            1000
            * statistics.median(
                timed(lambda: store.latest_predictions(clients[1], 100)) for _ in range(20)
            ),
            3,
        ),  # fmt: skip
        "range_1h_ms": round(
            1000
            * statistics.median(
                timed(
                    lambda: store.list_predictions(
                        clients[2],
                        since_ns=last[0].t_ns - 3600 * SEC,
                        until_ns=last[-1].t_ns,
                        limit=5000,
                    )
                )
                for _ in range(20)
            ),
            3,
        ),  # fmt: skip
    }


def bench_round_read(store: Store, args: argparse.Namespace) -> dict[str, float]:
    """Store --updates updates of --update-kb each, then read them back like the aggregator."""
    rng = random.Random(5)
    rnd = store.open_round(
        task="beat", strategy="fedavg", base_version=None, quorum=1, deadline=time.time() + 3600
    )
    blobs = [rng.randbytes(args.update_kb * 1024) for _ in range(args.updates)]
    write_s = timed(
        lambda: [
            store.record_update(
                round_id=rnd.round_id, client_id=f"c{i}", update_id=f"u{i}", blob=b, n_samples=100
            )
            for i, b in enumerate(blobs)
        ]
    )
    reads = []
    for _ in range(args.repeats):
        reads.append(timed(lambda: store.list_updates(rnd.round_id)))
    got = store.list_updates(rnd.round_id)
    assert [u.blob for u in got] == [blobs[int(u.client_id[1:])] for u in got]
    mb = args.updates * args.update_kb / 1024
    read_s = statistics.median(reads)
    claim = store.claim_round(rnd.round_id, "bench", lease_s=60)
    assert claim is not None
    fin_s = timed(lambda: store.finalize_round(
        rnd.round_id, "bench", model_blob=blobs[0], model_format="onnx",
        round_metrics={"loss": 0.1}, client_metrics={f"c{i}": {"loss": 0.1} for i in range(args.updates)},
    ))  # fmt: skip
    return {
        "updates": args.updates,
        "update_kb": args.update_kb,
        "record_update_per_s": round(args.updates / write_s, 1),
        "read_round_ms": round(1000 * read_s, 2),
        "read_round_mb_per_s": round(mb / read_s, 1),
        "finalize_ms": round(1000 * fin_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,sqlite-normal,postgresql",
                        help="comma list of sqlite, sqlite-normal, postgresql")  # fmt: skip
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MEDCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--clients", type=int, default=50, help="edge clients")
    parser.add_argument("--rows-per-client", type=int, default=400, help="predictions per client")
    parser.add_argument(
        "--batch", type=int, default=50, help="predictions per insert call (one MQTT message)"
    )
    parser.add_argument("--single-rows", type=int, default=1000, help="rows inserted one per call")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer threads")
    parser.add_argument("--updates", type=int, default=50, help="client updates in the round")
    parser.add_argument("--update-kb", type=int, default=64, help="size of one update (KiB)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    registry.add_record_argument(parser, "store_bench")
    args = parser.parse_args()

    results: dict[str, object] = {
        "benchmark": "store",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
        },  # fmt: skip
        "backends": {},
    }
    for backend in args.backends.split(","):
        url = args.pg_url if backend == "postgresql" else None
        with fresh_store(backend, args.pg_url) as store:
            if backend == "postgresql":
                sep = "&" if "?" in args.pg_url else "?"
                schema = getattr(store, "_search_path", None)
                threads_url = f"{url}{sep}schema={schema}"
            else:
                threads_url = store.url
            entry: dict[str, object] = {
                "predictions": bench_predictions(store, lambda u=threads_url: open_store(u), args),
                "round": bench_round_read(store, args),
            }
            if backend == "postgresql":
                import psycopg

                with psycopg.connect(args.pg_url) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                entry["server_version"] = row[0] if row else "?"
            results["backends"][backend] = entry  # type: ignore[index]
            print(f"{backend}: done", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.record:
        registry.record(args.record, results, sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
