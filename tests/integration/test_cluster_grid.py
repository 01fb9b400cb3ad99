"""The NATS grid's delivery guarantees on a real 3-node cluster, one at a time.

- what NATS acknowledged to a device (MQTT PUBACK) survives the loss of any node, the leader of
  the stream that holds it included, and the device's messages are acknowledged again once
  the stream has a new leader;
- a message is handed to one replica, and to another only if the first dies without
  acknowledging it (after the acknowledgement wait), never while the first is working on it;
- the chunks of split updates are handed out one at a time;
- retained announcements reach devices connected to any node, after a node loss too.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_aggregator.grid import Inbound
from cloud_aggregator.grid_nats import NatsGrid
from cloud_aggregator.nats_intake import MQTT_STREAM
from cloud_aggregator.service import subscriptions
from common import protocol as proto
from tests.support.cluster import NatsCluster, run_nats_cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ACK_WAIT_S = 4.0  # the cluster fixture's grid URL sets it


@pytest.fixture()
def cluster() -> Iterator[NatsCluster]:
    with run_nats_cluster() as c:
        yield c


@contextlib.contextmanager
def grid(cluster: NatsCluster, name: str) -> Iterator[NatsGrid]:
    g = NatsGrid(cluster.grid_url, name, subscriptions("agg"))
    g.start(30.0)
    try:
        yield g
    finally:
        g.stop()


def device(port: int, cid: str) -> mqtt.Client:
    """A device's MQTT 3.1.1 connection (NATS speaks no MQTT 5)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    return c


def publish(c: mqtt.Client, topic: str, payload: bytes) -> bool:
    """QoS 1; True once the broker acknowledged it."""
    info = c.publish(topic, payload, qos=1)
    with contextlib.suppress(RuntimeError, ValueError):  # not queued: the connection was lost
        info.wait_for_publish(10)
        return info.is_published()
    return False


def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``condition`` every 0.1 s until it holds or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not condition():
        time.sleep(0.1)


def drain(g: NatsGrid, seconds: float, ack: bool = True) -> list[Inbound]:
    """Everything from JetStream within ``seconds`` (statuses left out)."""
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        m = g.get(0.1)
        if m is None or "/status/" in m.topic:
            continue
        got.append(m)
        if ack:
            g.ack(m)
    return got


def test_what_nats_acknowledged_survives_killing_the_stream_leader(cluster: NatsCluster) -> None:
    # Prepare: the replicas' consumers exist; a device on a node that will survive
    with grid(cluster, "agg-a") as g:
        victim = cluster.stream_leader(MQTT_STREAM)
        node = next(n for n in cluster.nodes if n.name != victim)
        dev = device(node.ports["mqtt"], "dev-1")
        acked: list[tuple[int, float]] = []  # message, when its PUBACK came
        stop = threading.Event()

        def send() -> None:
            i = 0
            while not stop.is_set() and i < 20_000:
                if not dev.is_connected():  # paho reconnects by itself; the device waits
                    time.sleep(0.05)
                    continue
                if publish(dev, proto.client_topic(proto.Channel.PRED, "dev-1"), b"%d" % i):
                    acked.append((i, time.monotonic()))
                i += 1

        t = threading.Thread(target=send, daemon=True)
        t.start()
        # Execute: SIGKILL the leader of the stream that holds the devices' messages mid-flow
        wait_for(lambda: len(acked) >= 20, 15.0)
        killed_at = time.monotonic()
        cluster.kill(victim)
        # the cluster elects a new leader and publishing goes on: wait for acks after the loss
        wait_for(lambda: sum(when > killed_at + 1 for _, when in acked) >= 50, 45.0)
        stop.set()
        t.join(15)
        got = drain(g, 2 * ACK_WAIT_S)
        # Assert: every message the broker acknowledged is delivered (at least once), and the
        # device's messages are acknowledged again once the stream has a new leader
        received = {int(m.payload) for m in got}
        after = [i for i, when in acked if when > killed_at + 1]
        print(f"{len(acked)} acknowledged, {len(after)} after the loss of {victim}, "
              f"{len(got)} delivered")  # fmt: skip
        assert len(acked) - len(after) >= 20
        assert len(after) >= 50
        assert {i for i, _ in acked} <= received
        dev.loop_stop()


def test_a_killed_replica_s_message_goes_to_another_and_a_live_one_s_does_not(
    cluster: NatsCluster,
) -> None:
    # Prepare: replica A is a process that takes one message and never acknowledges it
    script = (
        "import sys, time\n"
        "from cloud_aggregator.grid_nats import NatsGrid\n"
        "from cloud_aggregator.service import subscriptions\n"
        f"g = NatsGrid({cluster.grid_url!r}, 'agg-a', subscriptions('agg'))\n"
        "g.start(30)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    m = g.get(1)\n"
        "    if m is not None and '/status/' not in m.topic:\n"
        "        print('held', m.payload.decode(), flush=True)\n"
    )
    a = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )  # noqa: S603
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "ready"
        dev = device(cluster.nodes[0].ports["mqtt"], "dev-2")
        assert publish(dev, proto.client_topic(proto.Channel.LABEL_ACK, "dev-2"), b"one")
        assert a.stdout.readline().strip() == "held one"
        with grid(cluster, "agg-b") as b:
            # A is alive and silent for two acknowledgement waits: B gets nothing
            assert drain(b, 2 * ACK_WAIT_S) == []
            # Execute: SIGKILL A
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            got = drain(b, 2 * ACK_WAIT_S)
            # Assert: B has it, once, marked as a redelivery
            assert [m.payload for m in got] == [b"one"]
            assert b.redelivered == 1
        dev.loop_stop()
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(10)
        if a.stdout is not None:
            a.stdout.close()


def test_chunks_are_handed_out_one_at_a_time(cluster: NatsCluster) -> None:
    # Prepare: two replicas, three chunks of one update
    dev = device(cluster.nodes[1].ports["mqtt"], "dev-3")
    topic = proto.chunk_topic(proto.Channel.UPDATE, "dev-3")
    with grid(cluster, "agg-a") as a, grid(cluster, "agg-b") as b:
        for i in range(3):
            assert publish(dev, topic, b"chunk-%d" % i)
        order = []
        for _ in range(3):
            # Execute: both replicas take what they are given, acknowledging nothing
            held = [(g, m) for g in (a, b) for m in drain(g, 1.5, ack=False)]
            # Assert: one chunk is out at a time, over both replicas; the next one follows
            # its acknowledgement
            assert len(held) == 1
            owner, msg = held[0]
            order.append(msg.payload)
            owner.ack(msg)
        assert sorted(order) == [b"chunk-0", b"chunk-1", b"chunk-2"]
    dev.loop_stop()


def test_retained_announcement_reaches_every_node_after_a_node_loss(cluster: NatsCluster) -> None:
    # Prepare: the aggregator announces a round (retained) through the balancer
    with grid(cluster, "agg-a") as g:
        assert g.publish(proto.round_current_topic(), b"round 7", retain=True)
        # Execute: SIGKILL the node leading the retained messages' stream
        cluster.kill(cluster.stream_leader("$MQTT_rmsgs"))
        # Assert: a device subscribing on each live node gets it
        for node in [n for n in cluster.nodes if n.alive]:
            got: list[bytes] = []
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"late-{node.name}", protocol=mqtt.MQTTv311
            )
            c.on_message = lambda _c, _u, m, got=got: got.append(bytes(m.payload))
            c.on_connect = lambda cl, *_: cl.subscribe(proto.round_current_topic(), qos=0)
            c.reconnect_delay_set(0.5, 2)  # NATS refuses connections until leaders are back
            c.connect("127.0.0.1", node.ports["mqtt"])
            c.loop_start()
            wait_for(lambda got=got: bool(got), 60.0)  # the retained stream may need a leader
            c.loop_stop()
            assert got == [b"round 7"], node.name
