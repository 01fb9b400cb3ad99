"""The edge agent against a real private mosquitto: MQTT replay end to end, broker outage,
bad payloads. Real MIT-BIH signal, the packaged beat model, the real QRS detector."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from common.payloads import Label, decode_chunk, decode_status, encode_chunk, encode_label
from common.pred_payloads import decode_predictions
from common.protocol import Channel, client_topic
from common.types import SignalChunk, StreamKind
from edge_agent.app import DEFAULT_MODEL, build_agent, load_classifier, run_edge
from edge_agent.config import EdgeSettings
from edge_agent.outbox import MAX_INFLIGHT_BATCHES
from edge_agent.uplink import MqttUplink
from tests.support.services import free_port, run_mosquitto
from transport.inbox import Message
from transport.mqtt import MqttConnection
from transport.settings import mqtt_settings

pytestmark = pytest.mark.integration

FS = 360.0
CID = "dev-it"


class Watcher:
    """A subscriber recording every message per topic (persistent session, so it survives a
    broker restart when the broker persists sessions)."""

    def __init__(self, port: int, topics: list[str], client_id: str = "watcher") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        settings = mqtt_settings(f"mqtt://127.0.0.1:{port}", client_id, clean=False,
                                 session_expiry_s=300, reconnect_min_s=0.2, reconnect_max_s=1.0)  # fmt: skip
        self.conn = MqttConnection(settings, topics, on_message=self._on_message)
        self.conn.connect(5)

    def _on_message(self, m: Message) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload, m.retain))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.conn.stop()


@pytest.fixture()
def record_100(data_root: Path) -> np.ndarray:
    import wfdb

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), channels=[0], sampto=int(40 * FS))
    return np.asarray(rec.p_signal[:, 0] * 1000.0)


def raw_chunks(x: np.ndarray, cid: str, seconds: float = 1.0) -> list[bytes]:
    step = int(seconds * FS)
    t0 = time.time_ns()
    return [
        encode_chunk(
            "raw",
            cid,
            SignalChunk(
                StreamKind.ECG, FS, t0 + int(s / FS * 1e9), x[s : s + step, None].copy(), s
            ),
        )
        for s in range(0, x.size, step)
    ]


def _batches(watcher: Watcher) -> list[tuple[str, tuple[int, ...]]]:
    """(batch id, beat times) of every ``pred`` message the watcher got, in order."""
    out = []
    for p in watcher.on(client_topic(Channel.PRED, CID)):
        d = decode_predictions(p)
        out.append((d.batch_id, tuple(b.t_ns for b in d.beats)))
    return out


def beat_times(watcher: Watcher) -> list[int]:
    return [
        b.t_ns
        for p in watcher.on(client_topic(Channel.PRED, CID))
        for b in decode_predictions(p).beats
    ]


@pytest.mark.datasets("mitdb")
def test_mqtt_replay_end_to_end(record_100: np.ndarray, tmp_path: Path) -> None:
    # Prepare
    with run_mosquitto() as broker:
        watcher = Watcher(broker.port, [f"medchain/v1/+/{CID}"])
        settings = EdgeSettings(
            client_id=CID,
            source=f"mqtt:{CID}?idle_timeout=3",
            broker_url=broker.url,
            buffer_path=tmp_path / "buf.sqlite",
            out_path=tmp_path / "out.jsonl",
            flush_interval_s=0.1,
        )
        payloads = raw_chunks(record_100, CID)
        # junk on the raw topic: not an envelope, wrong kind, another client's chunk
        bad = [
            b"\x00\x01junk",
            encode_label(Label("x", CID, 1, "N")),
            payloads[0].replace(CID.encode(), b"dev-xx"),
        ]

        async def device() -> None:
            # the agent's retained 'online' status means its raw subscription is up
            while not any(
                decode_status(p).online for p in watcher.on(client_topic(Channel.STATUS, CID))
            ):
                await asyncio.sleep(0.05)
            pub = MqttConnection(mqtt_settings(broker.url, "device"))
            pub.connect(5)
            raw = client_topic(Channel.RAW, CID)
            for i, p in enumerate(payloads):
                assert pub.publish_wait(raw, p, timeout_s=5)
                if i == 5:
                    for b in bad:
                        assert pub.publish_wait(raw, b, timeout_s=5)
            label_topic = client_topic(Channel.LABEL, CID)
            assert pub.publish_wait(label_topic, b"not a label", timeout_s=5)
            pub.stop()

        async def main():  # type: ignore[no-untyped-def]
            agent_task = asyncio.create_task(run_edge(settings))
            await device()
            return await agent_task

        # Execute
        stats = asyncio.run(main())
        time.sleep(0.3)
        watcher.close()
    # Assert: every detected beat arrived once, bad inputs counted, status online then offline
    times = beat_times(watcher)
    assert stats.beats > 40
    assert len(times) == len(set(times)) == stats.beats
    assert stats.source["rejected"] == 3
    assert stats.bad_payloads == 1
    statuses = [decode_status(p) for p in watcher.on(client_topic(Channel.STATUS, CID))]
    assert statuses[0].online and not statuses[-1].online
    assert statuses[-1].model_version
    live = [decode_chunk(p, "live")[1] for p in watcher.on(client_topic(Channel.LIVE, CID))]
    assert live and all(c.fs == 125.0 for c in live)
    out_beats = sum(
        1 for line in (tmp_path / "out.jsonl").read_text().splitlines() if '"type":"beat"' in line
    )
    assert out_beats == stats.beats


@pytest.mark.datasets("mitdb")
def test_broker_down_then_up_nothing_lost_nothing_twice(
    record_100: np.ndarray, tmp_path: Path
) -> None:
    # Prepare: a broker that persists sessions, so the watcher's queue survives the restart
    port = free_port()
    store = tmp_path / "mosq"
    store.mkdir()
    conf = f"persistence true\npersistence_location {store}/\n"
    settings = EdgeSettings(
        client_id=CID, buffer_path=tmp_path / "buf.sqlite", flush_interval_s=0.1
    )
    classifier = load_classifier(EdgeSettings(model_path=DEFAULT_MODEL))
    x = record_100
    chunks = [
        SignalChunk(
            StreamKind.ECG,
            FS,
            1_700_000_000 * 10**9 + int(s / FS * 1e9),
            x[s : s + 360, None].copy(),
            s,
        )
        for s in range(0, x.size, 360)
    ]
    outage = threading.Event()
    back = threading.Event()

    class PacedSource:
        async def chunks(self):  # type: ignore[no-untyped-def]
            for i, c in enumerate(chunks):
                if i == 10:
                    outage.set()
                    await asyncio.to_thread(back.wait, 20)
                await asyncio.sleep(0.02)
                yield c

    def broker_thread() -> None:
        outage.wait(20)
        first.stop()
        time.sleep(1.5)  # the agent keeps processing and buffering meanwhile
        holder.append(run_mosquitto(conf, port=port))
        holder[-1].__enter__()
        back.set()

    holder: list = []
    with run_mosquitto(conf, port=port) as first:
        watcher = Watcher(port, [client_topic(Channel.PRED, CID)])

        async def main():  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            uplink = MqttUplink(
                f"mqtt://127.0.0.1:{port}",
                CID,
                client_topic(Channel.STATUS, CID),
                lambda *_: b"",
                [],
                loop,
            )
            agent = build_agent(settings, classifier, uplink=uplink)
            uplink.start()
            assert await uplink.wait_connected(5)
            try:
                return (
                    await agent.run(PacedSource(), drain_timeout_s=20),
                    agent.buffer.counts(),
                    uplink,
                )
            finally:
                uplink.stop()
                agent.close()

        t = threading.Thread(target=broker_thread)
        t.start()
        # Execute
        stats, counts, uplink = asyncio.run(main())
        t.join()
        deadline = time.monotonic() + 10
        while len(set(beat_times(watcher))) < stats.beats and time.monotonic() < deadline:
            time.sleep(0.1)
        watcher.close()
        holder[-1].__exit__(None, None, None)
    # Assert
    times = beat_times(watcher)
    assert uplink.connection.connects >= 2, "the agent must have reconnected"
    # no aggregator here: the broker acknowledged everything, no store confirmed it yet
    assert counts == {
        "pending": 0,
        "inflight": 0,
        "sent": stats.beats + stats.events,
        "stored": 0,
        "rejected": 0,
    }
    assert len(set(times)) == stats.beats, "beats lost"
    # QoS 1 is at least once: a batch the broker took but could not acknowledge before it
    # stopped comes again, the same batch (the store keeps one row per beat). The agent itself
    # never sends a beat twice: no beat in two batches, at most the in-flight window repeated.
    batches = _batches(watcher)
    repeated = [b for b, n in Counter(b for b, _ in batches).items() if n > 1]
    assert len(repeated) <= MAX_INFLIGHT_BATCHES
    in_batches = Counter(t for _, beats in set(batches) for t in beats)
    assert [t for t, n in in_batches.items() if n > 1] == [], "a beat sent in two batches"
