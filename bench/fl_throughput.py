"""Aggregator throughput against the real broker and store: N simulated clients (default 1,000)
send head-mode updates (int8, 5x32 + 5) for each round; the aggregator validates, stores
(PostgreSQL by default) and aggregates them. Reports updates handled per second and the round
latency (announcement -> model committed). Prints JSON.

    python bench/fl_throughput.py --clients 1000 --rounds 3 [--store sqlite:////tmp/x.db]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from cloud_aggregator.config import AggregatorSettings  # noqa: E402
from cloud_aggregator.mqtt_io import PahoBroker  # noqa: E402
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob  # noqa: E402
from cloud_aggregator.service import AggregatorService, subscriptions  # noqa: E402
from common import fl_protocol as fl  # noqa: E402
from common import protocol as proto  # noqa: E402
from common.payloads import Status, encode_status  # noqa: E402
from store import DesiredTraining, RoundState, open_store  # noqa: E402
from tests.support.services import PG_URL, run_mosquitto  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
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
        t = threading.Thread(target=service.run, args=(stop,), daemon=True)
        t.start()
        while sum(service.online.values()) < args.clients:
            time.sleep(0.1)
        store.set_training_control(
            desired=DesiredTraining.RUNNING,
            task="beat",
            strategy="fedavg",
            rounds=args.rounds,
            config={"min_clients": args.clients, "deadline_s": 300.0, "quorum_fraction": 1.0},
            updated_by="bench",
        )
        results = []
        for r in range(1, args.rounds + 1):
            while not rounds_seen or rounds_seen[-1].round_no != r:
                time.sleep(0.01)
            ann = rounds_seen[-1]
            invited = [cid for cid in ids if ann.invites(cid)]  # the announced rule
            payloads = [
                fl.encode_update(
                    fl.ClientUpdate(
                        ann.round_id,
                        cid,
                        ann.model_version,
                        100,
                        {
                            k: rng.normal(0, 0.01, v.shape).astype(np.float32)
                            for k, v in head.items()
                        },
                    )
                )
                for cid in invited
            ]
            t0 = time.perf_counter()
            infos = [
                pub.publish(proto.client_topic(proto.Channel.UPDATE, cid), p, qos=1)
                for cid, p in zip(invited, payloads, strict=True)
            ]
            for info in infos:
                info.wait_for_publish(60)
            t_sent = time.perf_counter() - t0
            rid = int(ann.round_id)
            while store.get_round(rid).state != RoundState.CLOSED:
                time.sleep(0.01)
            t_closed = time.perf_counter() - t0
            rnd = store.get_round(rid)
            m = store.round_metrics(rid)
            results.append(
                {
                    "round": r,
                    "updates": store.count_updates(rid),
                    "publish_s": round(t_sent, 3),
                    "first_publish_to_committed_s": round(t_closed, 3),
                    "updates_per_s": round(len(payloads) / t_closed, 1),
                    "aggregate_s": round(m["aggregate_s"], 4),
                    "round_latency_s": round((rnd.closed_at or 0) - rnd.opened_at, 3),
                    "update_bytes": len(payloads[0]),
                }
            )
        # The pure part alone: decode + validate + FedAvg of the last round's payloads
        from cloud_aggregator.strategies import make_strategy
        from cloud_aggregator.validation import ValidationPolicy, validate_update

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
        broker.stop()
        pub.loop_stop()
        pub.disconnect()
    if "schema=flbench_" in args.store:
        store.drop_schema()  # type: ignore[attr-defined]  # our own throw-away schema
    store.close()
    out = {
                "benchmark": "fl_throughput",
                "clients": args.clients,
                "store": args.store.split("?")[0].split("://")[0],
                "rounds": results,
                "pure_decode_validate_aggregate_per_s": round(pure_per_s),
                "updates_per_s_mean": round(
                    float(np.mean([x["updates_per_s"] for x in results])), 1
                ),
                "round_latency_s_mean": round(
                    float(np.mean([x["round_latency_s"] for x in results])), 3
                ),
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)


if __name__ == "__main__":
    main()
