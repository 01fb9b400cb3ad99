"""Aggregator throughput against the real broker and store: N simulated clients (default 1,000)
send head-mode updates (int8, 5x32 + 5) for each round; the aggregator validates, stores
(PostgreSQL by default) and aggregates them. Reports updates handled per second and the round
latency (announcement -> model committed). Prints JSON.

    python bench/fl_throughput.py --clients 1000 --rounds 3 [--store sqlite:////tmp/x.db]

The updates are published by ``--publishers`` processes (default 2), each with its own MQTT
connection and share of the clients, so the aggregator's process holds the aggregator alone (a
publisher thread in its process took the GIL from it). The timed window runs from the first
publish of a round to its model committed in the store (the round's ``closed_at``, stamped in
the transaction that commits it).

``--replicas K`` runs K aggregator replicas on the same store, as a deployment scales out: this
process's and K - 1 ``medchain aggregator`` processes; the broker shares the updates among them
(MQTT 5 shared subscription), one of them (the lease holder) runs the rounds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import results as registry  # noqa: E402
from cloud_aggregator.config import AggregatorSettings  # noqa: E402
from cloud_aggregator.mqtt_io import PahoBroker  # noqa: E402
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob  # noqa: E402
from cloud_aggregator.service import AggregatorService, settle_heap, subscriptions  # noqa: E402
from common import fl_protocol as fl  # noqa: E402
from common import protocol as proto  # noqa: E402
from common.payloads import Status, encode_status  # noqa: E402
from store import DesiredTraining, RoundState, open_store  # noqa: E402
from tests.support.services import PG_URL, run_mosquitto  # noqa: E402

HEAD_SHAPES = {"head.weight": (5, 32), "head.bias": (5,)}


def _payloads(round_id: str, version: str, ids: list[str], seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        fl.encode_update(fl.ClientUpdate(round_id, cid, version, 100, {
            k: rng.normal(0, 0.01, shape).astype(np.float32) for k, shape in HEAD_SHAPES.items()
        }))
        for cid in ids
    ]  # fmt: skip


def publisher(port: int, k: int, jobs: mp.Queue, done: mp.Queue) -> None:  # type: ignore[type-arg]
    """One publisher process: per job (round id, model version, client ids) encode the updates,
    publish them (QoS 1), wait for every PUBACK; report (first publish, last PUBACK) times."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{k}", protocol=mqtt.MQTTv5)
    # paho's own inflight limit rescans every queued message on each PUBACK (quadratic: 57 %
    # of a publisher's CPU at 2,500 a round, taken from the aggregator on 2 cores): unlimited
    # there, the window of 1,000 unacknowledged messages kept here instead
    pub.max_inflight_messages_set(0)
    pub.max_queued_messages_set(0)
    window = threading.BoundedSemaphore(1000)
    pub.on_publish = lambda *_: window.release()
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    while (job := jobs.get()) is not None:
        round_id, version, ids = job
        payloads = _payloads(round_id, version, ids, seed=k)
        t0 = time.time()
        infos = []
        for cid, p in zip(ids, payloads, strict=True):
            window.acquire()
            infos.append(pub.publish(proto.client_topic(proto.Channel.UPDATE, cid), p, qos=1))
        for info in infos:
            info.wait_for_publish(120)
        done.put((t0, time.time(), len(payloads[0]) if payloads else 0))
    pub.loop_stop()
    pub.disconnect()


def _replica(url: str, store_url: str, k: int) -> subprocess.Popen[bytes]:
    """Aggregator replica ``k`` as its own process (``medchain aggregator``)."""
    env = {**os.environ, "MEDCHAIN_AGG_POLL_S": "0.05", "MEDCHAIN_AGG_WORKER": f"agg-bench-{k}"}
    cmd = [sys.executable, "-m", "medchain", "aggregator", "--broker", url, "--store", store_url]
    # its stdout away: this bench's stdout is its JSON
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)  # noqa: S603


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--replicas", type=int, default=1, help="aggregator replicas (processes)")
    ap.add_argument("--store", default=f"{PG_URL}?schema=flbench_{uuid.uuid4().hex[:8]}")
    registry.add_record_argument(ap, "fl_throughput")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    head = {
        "head.weight": rng.normal(0, 0.1, (5, 32)).astype(np.float32),
        "head.bias": np.zeros(5, np.float32),
    }
    store = open_store(args.store)
    store.put_model(stored_blob(fl.ModelRelease("v0", 0, head), {}), format=RELEASE_FORMAT)
    ids = [f"sim-{i:04d}" for i in range(args.clients)]
    with run_mosquitto(extra_conf="max_inflight_messages 1000\nmax_queued_messages 100000") as mosq:
        pub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-fleet", protocol=mqtt.MQTTv5
        )
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        rounds_seen: list[fl.RoundAnnouncement] = []
        pub.on_message = lambda c, u, m: (
            rounds_seen.append(fl.decode_round(m.payload)) if m.payload else None
        )
        pub.connect("127.0.0.1", mosq.port)
        pub.loop_start()
        pub.subscribe(proto.round_current_topic(), qos=1)
        for cid in ids:
            pub.publish(
                proto.client_topic(proto.Channel.STATUS, cid),
                encode_status(Status(cid, True, time.time_ns())),
                qos=1,
                retain=True,
            )
        s = AggregatorSettings(
            broker_url=mosq.url,
            store_url=args.store,
            worker="agg-bench",
            poll_s=0.05,
            deadline_s=300.0,
            min_clients=args.clients,
            quorum_fraction=1.0,
        )
        broker = PahoBroker(mosq.url, s.worker_name, subscriptions(s.shared_group))
        broker.start()
        service = AggregatorService(store, broker, s)
        stop = threading.Event()
        settle_heap()  # as `medchain aggregator` does before serving
        t = threading.Thread(target=service.run, args=(stop,), daemon=True)
        t.start()
        replicas = [_replica(mosq.url, args.store, k) for k in range(1, args.replicas)]
        while sum(service.online.values()) < args.clients:
            time.sleep(0.1)
        time.sleep(2.0 if replicas else 0.0)  # the other replicas see them online too
        store.set_training_control(
            desired=DesiredTraining.RUNNING,
            task="beat",
            strategy="fedavg",
            rounds=args.rounds,
            config={"min_clients": args.clients, "deadline_s": 300.0, "quorum_fraction": 1.0},
            updated_by="bench",
        )
        ctx = mp.get_context("spawn")
        jobs = [ctx.Queue() for _ in range(args.publishers)]
        done: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=publisher, args=(mosq.port, k, jobs[k], done), daemon=True)
                 for k in range(args.publishers)]  # fmt: skip
        for proc in procs:
            proc.start()
        results = []
        for r in range(1, args.rounds + 1):
            while not rounds_seen or rounds_seen[-1].round_no != r:
                time.sleep(0.01)
            ann = rounds_seen[-1]
            invited = [cid for cid in ids if ann.invites(cid)]  # the announced rule
            for k, q in enumerate(jobs):
                q.put((ann.round_id, ann.model_version, invited[k :: args.publishers]))
            reports = [done.get(timeout=300) for _ in jobs]
            t0 = min(t for t, _, _ in reports)
            t_sent = max(t for _, t, _ in reports) - t0
            rid = int(ann.round_id)
            # polled slowly: this thread shares the aggregator's GIL (at 10 ms it took 11 % of
            # the process); the close time is the store's stamp, not when the poll saw it
            while (rnd := store.get_round(rid)).state != RoundState.CLOSED:
                time.sleep(0.2)
            t_closed = (rnd.closed_at or time.time()) - t0
            m = store.round_metrics(rid)
            results.append(
                {
                    "round": r,
                    "updates": store.count_updates(rid),
                    "publish_s": round(t_sent, 3),
                    "first_publish_to_committed_s": round(t_closed, 3),
                    "updates_per_s": round(len(invited) / t_closed, 1),
                    "aggregate_s": round(m["aggregate_s"], 4),
                    # where the window's end goes: the last update stored, the round claimed
                    "last_stored_to_claimed_s": round(
                        (rnd.claimed_at or 0)
                        - max(u.received_at for u in store.list_updates(rid, include_blobs=False)),
                        3,
                    ),
                    "claimed_to_committed_s": round(
                        (rnd.closed_at or 0) - (rnd.claimed_at or 0), 3
                    ),
                    "round_latency_s": round((rnd.closed_at or 0) - rnd.opened_at, 3),
                    "update_bytes": reports[0][2],
                }
            )
        # The pure part alone: decode + validate + FedAvg of the last round's payloads
        from cloud_aggregator.strategies import make_strategy
        from cloud_aggregator.validation import ValidationPolicy, validate_update

        for q in jobs:
            q.put(None)
        for proc in procs:
            proc.join(30)
        payloads = _payloads(ann.round_id, ann.model_version, invited, seed=0)
        t0 = time.perf_counter()
        shapes = {k: v.shape for k, v in head.items()}
        ups = [fl.decode_update(p) for p in payloads]
        ok = [
            u
            for u in ups
            if validate_update(u, shapes, ann.model_version, ValidationPolicy()) is None
        ]
        make_strategy("fedavg").aggregate(head, [(u.delta, u.n_examples) for u in ok], {})
        pure_per_s = len(payloads) / (time.perf_counter() - t0)
        stop.set()
        t.join(10)
        for proc in replicas:
            proc.terminate()
            proc.wait(20)
        broker.stop()
        pub.loop_stop()
        pub.disconnect()
    if "schema=flbench_" in args.store:
        store.drop_schema()  # type: ignore[attr-defined]  # our own throw-away schema
    store.close()
    e2e = float(np.mean([x["updates_per_s"] for x in results]))
    out = {
        "benchmark": "fl_throughput",
        "clients": args.clients,
        "publishers": args.publishers,
        "replicas": args.replicas,
        "store": args.store.split("?")[0].split("://")[0],
        "rounds": results,
        "pure_decode_validate_aggregate_per_s": round(pure_per_s),
        "updates_per_s_mean": round(e2e, 1),
        "ratio_end_to_end_over_decode_only": round(e2e / pure_per_s, 3),
        "round_latency_s_mean": round(float(np.mean([x["round_latency_s"] for x in results])), 3),
    }
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)


if __name__ == "__main__":
    main()
