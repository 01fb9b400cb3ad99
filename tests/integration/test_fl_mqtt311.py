"""The system on a broker that speaks MQTT 3.1.1 only (what a clustered broker may offer).

The embedded amqtt broker answers an MQTT 5 CONNECT with "unsupported protocol version": every
adapter falls back to 3.1.1 by itself. Mosquitto speaks both, so there 3.1.1 is forced with the
broker URL's ``?protocol=3.1.1``. On both, an edge agent streams predictions that the
aggregator's ingestion stores and confirms (outbox receipts), and a clinician's label reaches
the device and comes back as a stored receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.service import AggregatorService, subscriptions
from common.payloads import Status, encode_status
from common.protocol import Channel, client_topic
from common.types import SignalChunk, StreamKind
from edge_agent.app import DEFAULT_MODEL, build_agent, load_classifier
from edge_agent.config import EdgeSettings
from edge_agent.uplink import MqttUplink
from medchain.synthetic_ecg import simulate_ecg
from store.factory import open_store
from tests.support.services import free_port, run_mosquitto, wait_port
from web.delivery import deliver
from web.live.fanout import Fanout
from web.live.hub import LiveHub
from web.live.mqtt_feed import MqttLiveFeed

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CID = "dev-311"
FS = 360.0


@contextlib.contextmanager
def amqtt_broker() -> Iterator[str]:
    """The embedded amqtt broker (MQTT 3.1.1 only) on a free port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medchain.embedded_broker", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 20)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["amqtt", "mosquitto-forced-311"])
def broker_311(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL on which every client speaks MQTT 3.1.1."""
    if request.param == "amqtt":
        with amqtt_broker() as url:
            yield url
    else:
        with run_mosquitto() as mosq:
            yield f"{mosq.url}?protocol=3.1.1"


def test_adapter_falls_back_to_mqtt311_and_drops_the_share_prefix() -> None:
    # Prepare: the embedded amqtt broker speaks MQTT 3.1.1 only
    with amqtt_broker() as url:
        sub = PahoBroker(url, "agg-311", ["$share/agg/medchain/v1/update/#"])
        pub = PahoBroker(url, "dev-311", [], clean_start=True, manual_ack=False)
        # Execute
        sub.start(20)  # a persistent session: amqtt leaves its MQTT 5 CONNECT unanswered (5 s)
        pub.start(20)
        ok = pub.publish("medchain/v1/update/dev-311", b"hello", expiry_s=30, timeout_s=10)
        msg = sub.get(10)
        # Assert
        assert not sub.connection.mqtt5 and not pub.connection.mqtt5
        assert (
            ok
            and msg is not None
            and (msg.topic, msg.payload) == ("medchain/v1/update/dev-311", b"hello")
        )
        sub.ack(msg)
        sub.stop()
        pub.stop()


def _chunks(seconds: float = 40.0) -> list[SignalChunk]:
    """One-second chunks of a synthetic ECG (µV), stamped from now."""
    x = simulate_ecg(duration_s=seconds, fs=FS, af_fraction=0.0, seed=11).signal
    t0 = time.time_ns()
    step = int(FS)
    return [
        SignalChunk(StreamKind.ECG, FS, t0 + int(s / FS * 1e9), x[s : s + step, None].copy(), s)
        for s in range(0, x.size - step + 1, step)
    ]


def test_edge_agent_works_on_a_311_broker(broker_311: str, tmp_path: Path) -> None:
    # Prepare: the aggregator's ingestion (store + receipts) and the web's label feed
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.register_client(CID, task="beat", dataset="synthetic")
    agg = PahoBroker(broker_311, "agg-311", subscriptions("agg"))
    agg.start(10.0)
    service = AggregatorService(store, agg, AggregatorSettings(worker="agg-311", poll_s=0.1))  # type: ignore[arg-type]
    stop = threading.Event()
    ingest = threading.Thread(target=service.run, args=(stop,), daemon=True)
    ingest.start()
    feed = MqttLiveFeed(broker_311, [LiveHub(10.0, 10, Fanout(4, 16))])
    feed.start()
    assert feed.wait_connected(10)
    settings = EdgeSettings(
        client_id=CID, buffer_path=tmp_path / "buf.sqlite", flush_interval_s=0.1
    )
    classifier = load_classifier(EdgeSettings(model_path=DEFAULT_MODEL))
    chunks = _chunks()
    labelled: list[str] = []

    def label_a_stored_beat() -> None:
        """A clinician labels the latest beat the store has, as the web app does."""
        deadline = time.monotonic() + 10
        while not (beats := store.latest_predictions(CID, 1)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert beats, "no prediction reached the store"
        rec = store.add_label(client_id=CID, target="beat", t_ns=beats[0].t_ns, label="V",
                              author="alice")  # fmt: skip
        labelled.extend(deliver(store, feed, [rec]))

    class PacedSource:
        async def chunks(self) -> AsyncIterator[SignalChunk]:
            for i, c in enumerate(chunks):
                if i == len(chunks) // 2:
                    await asyncio.to_thread(label_a_stored_beat)
                await asyncio.sleep(0.02)
                yield c

    def status(online: bool, detail: str, session: int, seq: int) -> bytes:
        return encode_status(
            Status(CID, online, time.time_ns(), classifier.version, None, detail, session, seq)
        )

    async def main():  # type: ignore[no-untyped-def]
        uplink = MqttUplink(
            broker_311,
            CID,
            client_topic(Channel.STATUS, CID),
            status,
            [client_topic(Channel.LABEL, CID), client_topic(Channel.PRED_ACK, CID)],
            asyncio.get_running_loop(),
        )
        agent = build_agent(settings, classifier, uplink=uplink)
        uplink.start()
        assert await uplink.wait_connected(10)
        try:
            stats = await agent.run(PacedSource(), drain_timeout_s=20)
            return stats, agent.buffer.counts(), agent.buffer.receipts.counts(), uplink
        finally:
            await asyncio.to_thread(uplink.stop, "stopped")
            agent.close()

    try:
        # Execute
        stats, counts, receipts, uplink = asyncio.run(main())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            store.list_labels(CID, state="acknowledged") and not store.get_client(CID).online  # type: ignore[union-attr]
        ):
            time.sleep(0.1)
    finally:
        stop.set()
        ingest.join(10)
        agg.stop()
        feed.stop()
    # Assert: every client spoke 3.1.1
    assert not (uplink.connection.mqtt5 or agg.connection.mqtt5 or feed.connection.mqtt5)
    # every beat and event stored by the aggregator and confirmed to the device (receipts)
    assert stats.beats > 30
    stored = stats.beats + stats.events
    assert counts == {"pending": 0, "inflight": 0, "sent": 0, "stored": stored, "rejected": 0}
    assert sum(store.prediction_counts(CID).values()) == stats.beats
    # the label reached the device, matched a beat, and its receipt is stored
    assert labelled and stats.labels_clinician == 1
    assert receipts["pending"] == receipts["inflight"] == 0
    assert [r.label_id for r in store.list_labels(CID, state="acknowledged")] == labelled
    # the retained status went online, then offline on the clean stop
    assert store.get_client(CID).online is False  # type: ignore[union-attr]
    store.close()


def test_federated_rounds_on_a_311_only_broker(tmp_path: Path) -> None:
    # Prepare: the simulated fleet (one connection per device) and the aggregator on amqtt
    from store import DesiredTraining, RoundState
    from tests.integration.fl_harness import aggregator, fleet, seed_store, wait_for

    store = open_store(f"sqlite:///{tmp_path / 'fl.db'}")
    seed_store(store, rounds=2)
    # Execute
    with amqtt_broker() as url, aggregator(store, url), fleet(url, tmp_path, 3) as f:
        wait_for(
            lambda: store.get_training_control().desired == DesiredTraining.STOPPED, 90, "2 rounds"
        )
    # Assert
    rounds = sorted(store.list_rounds(task="beat"), key=lambda r: r.round_id)
    assert [r.state for r in rounds] == [RoundState.CLOSED] * 2
    assert [store.count_updates(r.round_id) for r in rounds] == [3, 3]
    assert all(p.stats.rounds_trained == 2 for p in f.participants)
    store.close()
