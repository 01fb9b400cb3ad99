"""A spot check through a real private mosquitto: request on control/{id}, one verdict on
spot/{id}, the same verdict as a spot_check event in pred/{id}. Real MIT-BIH signal, the
packaged rhythm model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.payloads import decode_status
from common.pred_payloads import decode_predictions
from common.protocol import Channel, client_topic
from common.spot_payloads import SpotCheckRequest, decode_spot_result, encode_spot_request
from edge_agent.app import run_edge
from edge_agent.config import EdgeSettings
from tests.integration.test_edge_mqtt import FS, Watcher, raw_chunks
from tests.support.services import run_mosquitto

pytestmark = pytest.mark.integration

CID = "dev-it"


@pytest.mark.datasets("mitdb")
def test_spot_check_over_mqtt(data_root: Path, tmp_path: Path) -> None:
    # Prepare: 45 s of record 100 (sinus rhythm) streamed by a device over MQTT
    import wfdb

    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"), channels=[0], sampto=int(45 * FS))
    x = np.asarray(rec.p_signal[:, 0] * 1000.0)
    with run_mosquitto() as broker:
        watcher = Watcher(broker.port, [f"medchain/v1/+/{CID}"])
        settings = EdgeSettings(
            client_id=CID,
            source=f"mqtt:{CID}?idle_timeout=3",
            broker_url=broker.url,
            buffer_path=tmp_path / "buf.sqlite",
            flush_interval_s=0.1,
        )

        async def clinic_and_device() -> None:
            while not any(
                decode_status(p).online for p in watcher.on(client_topic(Channel.STATUS, CID))
            ):
                await asyncio.sleep(0.05)
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="clinic", protocol=mqtt.MQTTv5)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            request = encode_spot_request(SpotCheckRequest(CID, "clinic-1", 30.0, time.time_ns()))
            pub.publish(client_topic(Channel.CONTROL, CID), request, qos=1).wait_for_publish(5)
            await asyncio.sleep(0.5)
            for p in raw_chunks(x, CID):
                pub.publish(client_topic(Channel.RAW, CID), p, qos=1).wait_for_publish(5)
            pub.disconnect()
            pub.loop_stop()

        async def main():  # type: ignore[no-untyped-def]
            agent = asyncio.create_task(run_edge(settings))
            await clinic_and_device()
            return await agent

        # Execute
        asyncio.run(main())
        time.sleep(0.3)
        watcher.close()
    # Assert: one decided verdict for the request, and the same as an event in pred
    results = [decode_spot_result(p) for p in watcher.on(client_topic(Channel.SPOT, CID))]
    assert [(r.request_id, r.label, r.decided) for r in results] == [("clinic-1", "N", True)]
    assert 29.9 <= (results[0].t_end_ns - results[0].t_start_ns) / 1e9 <= 30.1
    events = [
        e
        for p in watcher.on(client_topic(Channel.PRED, CID))
        for e in decode_predictions(p).events
        if e.kind == "spot_check"
    ]
    assert [e.details["class"] for e in events] == ["N"]
