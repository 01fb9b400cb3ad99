"""Thousands of synthetic devices over a real broker, each with its own MQTT connection.

A fleet process holds ``count`` paho clients on one selector loop (paho's external-loop
sockets: no thread per device), each a :class:`cloud_aggregator.scale.SyntheticDevice`: it logs
in with a Last Will, publishes its retained online status, subscribes to the round
announcement, and answers each round it is invited to with one QoS 1 update. It prints
``ready <n>`` once every client has its session, and a JSON line of counters when it stops
(SIGTERM, ``--seconds``, or its parent gone).

    python -m tests.support.mqtt_fleet --port 1883 --first 0 --count 2500

:func:`start_fleets` / :func:`stop_fleets` run several such processes for a bench or test.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_aggregator.scale import HEAD_SHAPES, SyntheticDevice
from common import protocol as proto
from common.payloads import Status, encode_status

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FleetStats:
    """What one fleet process did."""

    connected: int = 0
    connects: int = 0
    updates_sent: int = 0
    updates_acked: int = 0
    disconnects: int = 0


class Fleet:
    """``count`` synthetic devices ``sim-<first>`` ... on one selector (see the module doc)."""

    def __init__(self, host: str, port: int, first: int, count: int, v5: bool = True) -> None:
        self.host, self.port = host, port
        self.sel = selectors.DefaultSelector()
        self.stats = FleetStats()
        self.clients = [self._client(f"sim-{i:06d}", v5, i) for i in range(first, first + count)]
        self.ready: set[str] = set()
        self.stopping = False  # no reconnects once stop() disconnects
        self.started: list[mqtt.Client] = []  # connected at least once (keepalive, reconnect)

    def _client(self, cid: str, v5: bool, seed: int) -> mqtt.Client:
        proto_v = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto_v)
        device = SyntheticDevice(cid, HEAD_SHAPES, seed=seed)
        status_topic = proto.client_topic(proto.Channel.STATUS, cid)
        offline = encode_status(Status(cid, False, time.time_ns(), detail="lost"))
        c.will_set(status_topic, offline, qos=1, retain=True)
        c.user_data_set(device)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda cl, dev, mid, rc, props: self.ready.add(dev.client_id)
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        c.on_socket_open = lambda cl, ud, sock: self.sel.register(sock, selectors.EVENT_READ, cl)
        c.on_socket_close = lambda cl, ud, sock: self._unregister(sock)
        c.on_socket_register_write = lambda cl, ud, sock: self.sel.modify(
            sock, selectors.EVENT_READ | selectors.EVENT_WRITE, cl
        )
        c.on_socket_unregister_write = lambda cl, ud, sock: self.sel.modify(
            sock, selectors.EVENT_READ, cl
        )
        return c

    def _unregister(self, sock: Any) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_connect(self, c: mqtt.Client, dev: SyntheticDevice, flags: Any, rc: Any,
                    props: Any) -> None:  # fmt: skip
        if rc.is_failure:
            return
        self.stats.connects += 1
        online = encode_status(Status(dev.client_id, True, time.time_ns()))
        c.publish(proto.client_topic(proto.Channel.STATUS, dev.client_id), online, 1, True)
        c.subscribe(proto.round_current_topic(), qos=1)

    def _on_message(self, c: mqtt.Client, dev: SyntheticDevice, msg: mqtt.MQTTMessage) -> None:
        dev.on_message(msg.topic, msg.payload)
        for topic, payload in dev.poll():
            c.publish(topic, payload, qos=1)
            self.stats.updates_sent += 1

    def _on_publish(self, c: mqtt.Client, dev: SyntheticDevice, mid: int, rc: Any,
                    props: Any) -> None:  # fmt: skip
        self.stats.updates_acked += 1

    def _on_disconnect(self, c: mqtt.Client, dev: SyntheticDevice, flags: Any, rc: Any,
                       props: Any) -> None:  # fmt: skip
        self.stats.disconnects += 1
        self.ready.discard(dev.client_id)

    def connect_all(self, batch: int = 200) -> None:
        """Open the connections ``batch`` at a time, serving the selector in between."""
        for start in range(0, len(self.clients), batch):
            for c in self.clients[start : start + batch]:
                c.connect_async(self.host, self.port, keepalive=60)
                c.reconnect()
                self.started.append(c)
            self.serve(0.05)

    def serve(self, seconds: float) -> None:
        """Run the selector loop for ``seconds``; keepalives and retries once a second."""
        end = time.monotonic() + seconds
        next_misc = time.monotonic()
        while (now := time.monotonic()) < end:
            for key, mask in self.sel.select(timeout=min(0.2, end - now)):
                c = key.data
                if mask & selectors.EVENT_READ:
                    c.loop_read()
                if mask & selectors.EVENT_WRITE:
                    c.loop_write()
            if time.monotonic() >= next_misc and not self.stopping:
                next_misc = time.monotonic() + 1.0
                for c in self.started:
                    if c.loop_misc() == mqtt.MQTT_ERR_NO_CONN and c.socket() is None:
                        try:
                            c.reconnect()
                        except OSError:
                            pass

    def stop(self) -> None:
        """Publish offline statuses and disconnect every client."""
        for c in self.clients:
            dev = c.user_data_get()
            offline = encode_status(Status(dev.client_id, False, time.time_ns(), detail="stopped"))
            c.publish(proto.client_topic(proto.Channel.STATUS, dev.client_id), offline, 1, True)
        self.serve(1.0)
        self.stopping = True
        for c in self.clients:
            c.disconnect()
        self.serve(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="synthetic devices over MQTT, one process")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=1800.0)
    ap.add_argument("--mqtt311", action="store_true")
    args = ap.parse_args(argv)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    parent = os.getppid()
    fleet = Fleet(args.host, args.port, args.first, args.count, v5=not args.mqtt311)
    fleet.connect_all()
    end = time.monotonic() + args.seconds
    announced = False
    while not stop["now"] and time.monotonic() < end and os.getppid() == parent:
        fleet.serve(0.5)
        if not announced and len(fleet.ready) == args.count:
            print(f"ready {args.count}", flush=True)
            announced = True
    fleet.stop()
    s = fleet.stats
    print(json.dumps({"first": args.first, "count": args.count, "connects": s.connects,
                      "disconnects": s.disconnects, "updates_sent": s.updates_sent,
                      "acked": s.updates_acked}), flush=True)  # fmt: skip
    return 0


def start_fleets(port: int, devices: int, processes: int) -> list[subprocess.Popen[str]]:
    """Start ``processes`` fleet processes sharing ``devices`` between them."""
    per = -(-devices // processes)
    procs = []
    for first in range(0, devices, per):
        cmd = [sys.executable, "-m", "tests.support.mqtt_fleet", "--port", str(port),
               "--first", str(first), "--count", str(min(per, devices - first))]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True))  # noqa: S603
    return procs


def wait_ready(procs: list[subprocess.Popen[str]], timeout_s: float) -> None:
    """Block until every fleet printed ``ready`` (raises TimeoutError)."""
    end = time.monotonic() + timeout_s
    for p in procs:
        assert p.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        while True:
            left = end - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                raise TimeoutError(f"fleet {p.pid} not ready within {timeout_s:g} s")
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"fleet {p.pid} exited with {p.wait()}")
            if line.startswith("ready"):
                break
        sel.close()


def stop_fleets(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """SIGTERM every fleet and collect its counters."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    out = []
    for p in procs:
        try:
            stdout, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate()
        lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
        out.extend(lines)
    return out


def run_rounds_over_broker(
    store: Any, devices: int, rounds: int, *, processes: int = 4, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """``rounds`` rounds of ``devices`` synthetic devices over a private Mosquitto, the
    aggregator's service in this process (its store ``store``), the devices in ``processes``
    fleet processes. Returns the time until every device was online (per the aggregator), and
    per round the wall time, updates stored and the aggregator process's peak memory."""
    import threading

    from cloud_aggregator.config import AggregatorSettings
    from cloud_aggregator.mqtt_io import PahoBroker
    from cloud_aggregator.scale import peak_rss_mb, seed_head_release
    from cloud_aggregator.service import AggregatorService, subscriptions
    from store import DesiredTraining
    from tests.support.services import run_mosquitto

    seed_head_release(store)
    conf = "max_inflight_messages 1000\nmax_queued_messages 100000\nmax_connections -1"
    with run_mosquitto(extra_conf=conf) as mosq:
        s = AggregatorSettings(broker_url=mosq.url, worker="agg-scale", poll_s=0.2, seed=0,
                               round_interval_s=0.0, screen_suspects=False)  # fmt: skip
        broker = PahoBroker(mosq.url, s.worker_name, subscriptions(s.shared_group))
        broker.start(10.0)
        service = AggregatorService(store, broker, s)
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        rss0 = rss_mb(mosq.process.pid)
        t0 = time.perf_counter()
        procs = start_fleets(mosq.port, devices, processes)
        try:
            wait_ready(procs, timeout_s)
            while sum(service.online.values()) < devices:
                if time.perf_counter() - t0 > timeout_s:
                    raise TimeoutError(f"{sum(service.online.values())} of {devices} online")
                time.sleep(0.1)
            online_s = time.perf_counter() - t0
            broker_kb = (rss_mb(mosq.process.pid) - rss0) * 1024 / devices
            store.set_training_control(
                desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg", rounds=rounds,
                config={"min_clients": devices, "quorum_fraction": 1.0, "overselect": 0.0,
                        "deadline_s": timeout_s},
                updated_by="scale",
            )  # fmt: skip
            out: list[dict[str, Any]] = []
            t_round = time.perf_counter()
            while store.get_training_control().desired == DesiredTraining.RUNNING:
                if time.perf_counter() - t0 > timeout_s:
                    raise TimeoutError(f"{len(out)} of {rounds} rounds within {timeout_s:g} s")
                time.sleep(0.05)
                for h in service.history[len(out) :]:
                    wall = time.perf_counter() - t_round
                    n = float(h.get("received") or 0)
                    out.append({"round": h.get("round_no"), "state": h.get("state"),
                                "updates": n, "wall_s": round(wall, 2),
                                "updates_per_s": round(n / wall, 1),
                                "aggregate_s": round(float(h.get("aggregate_s") or 0), 2),
                                "peak_rss_mb": round(peak_rss_mb(), 1)})  # fmt: skip
                    t_round = time.perf_counter()
        finally:
            fleets = stop_fleets(procs)
            stop.set()
            thread.join(30)
            broker.stop()
    return {"devices": devices, "processes": processes, "online_s": round(online_s, 1),
            "broker_kb_per_device": round(broker_kb, 1), "rounds": out,
            "fleets": fleets}  # fmt: skip


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (``VmRSS`` of /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    raise SystemExit(main())
