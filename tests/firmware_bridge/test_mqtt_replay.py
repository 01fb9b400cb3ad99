"""MQTT replay mode against a private mosquitto: publisher -> broker -> subscriber source."""

from __future__ import annotations

import asyncio

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.payloads import encode_chunk
from common.types import SignalChunk, StreamKind
from firmware_bridge.mqtt_replay import (
    BrokerUnavailableError,
    MqttReplayPublisher,
    MqttReplaySource,
)
from firmware_bridge.replay import WfdbReplaySource
from firmware_bridge.sources import open_source
from tests.support.datasets import dataset_path
from tests.support.services import Mosquitto, free_port

pytestmark = pytest.mark.integration


def _record() -> WfdbReplaySource:
    path = dataset_path("mitdb") / "100"
    return WfdbReplaySource(path, channels=["MLII"], speed=None, duration_s=20.0, t0_ns=0)


def test_wfdb_record_round_trips_through_the_broker(mosquitto: Mosquitto) -> None:
    # Prepare
    source = MqttReplaySource("dev-1", mosquitto.url, idle_timeout_s=3.0)
    publisher = MqttReplayPublisher("dev-1", mosquitto.url)

    async def run() -> list[SignalChunk]:
        got: list[SignalChunk] = []
        async with source:
            task = asyncio.create_task(publisher.publish(_record()))
            async for chunk in source.chunks():
                got.append(chunk)
                if len(got) == 20:
                    break
            assert await task == 20
        return got

    # Execute
    chunks = asyncio.run(asyncio.wait_for(run(), 30))

    # Assert: sample-exact at float32 precision, contiguous, same timing
    import wfdb

    ref = wfdb.rdrecord(str(dataset_path("mitdb") / "100"), channels=[0], sampto=7200)
    got = np.concatenate([c.samples for c in chunks])[:, 0]
    np.testing.assert_allclose(got, ref.p_signal[:, 0] * 1000, rtol=1e-6, atol=1e-3)
    assert [c.seq for c in chunks] == list(range(0, 7200, 360))
    assert chunks[3].t0_ns == 3_000_000_000 and chunks[0].fs == 360.0
    assert source.stats.rejected == 0 and source.stats.gaps == 0


def test_bad_payloads_gaps_and_duplicates_are_counted(mosquitto: Mosquitto) -> None:
    # Prepare: a raw paho publisher sending good, garbage, duplicate and gapped chunks
    def chunk(seq: int) -> bytes:
        samples = np.full((10, 1), float(seq))
        return encode_chunk("raw", "dev-2", SignalChunk(StreamKind.ECG, 100.0, seq, samples, seq))

    other = encode_chunk(
        "raw", "intruder", SignalChunk(StreamKind.ECG, 100.0, 0, np.ones((1, 1)), 10)
    )
    payloads = [chunk(0), b"garbage", chunk(10), chunk(10), other, chunk(40)]
    source = MqttReplaySource("dev-2", mosquitto.url, idle_timeout_s=1.0)

    async def run() -> list[SignalChunk]:
        got: list[SignalChunk] = []
        async with source:
            client = mqtt.Client(CallbackAPIVersion.VERSION2)
            client.connect("127.0.0.1", mosquitto.port)
            client.loop_start()
            for p in payloads:
                client.publish(source.topic, p, qos=1).wait_for_publish(5)
            client.disconnect()
            client.loop_stop()
            async for c in source.chunks():
                got.append(c)
        return got

    # Execute
    chunks = asyncio.run(asyncio.wait_for(run(), 20))

    # Assert: the stream went on past every bad message
    assert [c.seq for c in chunks] == [0, 10, 40]
    stats = source.stats
    assert (stats.rejected, stats.duplicates, stats.gaps, stats.missing_samples) == (2, 1, 1, 20)
    assert stats.chunks == 3 and stats.frames == 4


def test_open_source_mqtt_spec(mosquitto: Mosquitto) -> None:
    # Execute
    source = open_source(f"mqtt:dev-3?broker={mosquitto.url}&idle_timeout=0.2")

    async def run() -> int:
        async with source:
            return len([c async for c in source.chunks()])

    # Assert
    assert isinstance(source, MqttReplaySource) and source.topic == "medchain/v1/raw/dev-3"
    assert asyncio.run(run()) == 0


def test_unreachable_broker_is_a_clear_error() -> None:
    # Prepare: nothing listens on this port
    source = MqttReplaySource("dev-4", f"mqtt://127.0.0.1:{free_port()}", connect_timeout_s=0.5)

    async def run() -> None:
        async with source:
            pass

    # Execute / Assert
    with pytest.raises(BrokerUnavailableError, match="not subscribed"):
        asyncio.run(run())


def test_names_and_errors_never_show_the_broker_password() -> None:
    # Prepare: credentials in the URL, nothing listening
    url = f"mqtt://dev-5:s3cret@127.0.0.1:{free_port()}"
    source = MqttReplaySource("dev-5", url, connect_timeout_s=0.5)
    publisher = MqttReplayPublisher("dev-5", url, connect_timeout_s=0.5)

    async def enter() -> None:
        async with source:
            pass

    # Execute
    with pytest.raises(BrokerUnavailableError) as source_error:
        asyncio.run(enter())
    with pytest.raises(BrokerUnavailableError) as publisher_error:
        asyncio.run(publisher.publish(_record()))
    # Assert
    shown = [source.name, str(source_error.value), str(publisher_error.value)]
    assert all("s3cret" not in s and "127.0.0.1" in s for s in shown), shown
