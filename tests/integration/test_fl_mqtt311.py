"""The aggregator's MQTT adapter falls back to 3.1.1 on a broker without MQTT 5 (amqtt)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud_aggregator.mqtt_io import PahoBroker
from tests.support.services import free_port, wait_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_adapter_falls_back_to_mqtt311_and_drops_the_share_prefix() -> None:
    # Prepare: the embedded amqtt broker speaks MQTT 3.1.1 only
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medchain.embedded_broker", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 20)
        sub = PahoBroker(f"mqtt://127.0.0.1:{port}", "agg-311", ["$share/agg/medchain/v1/update/#"])
        pub = PahoBroker(
            f"mqtt://127.0.0.1:{port}", "dev-311", [], clean_start=True, manual_ack=False
        )
        # Execute
        sub.start(10)
        pub.start(10)
        time.sleep(0.5)
        ok = pub.publish("medchain/v1/update/dev-311", b"hello", expiry_s=30, timeout_s=10)
        msg = sub.get(10)
        # Assert
        assert not sub.mqtt5 and not pub.mqtt5
        assert (
            ok
            and msg is not None
            and (msg.topic, msg.payload) == ("medchain/v1/update/dev-311", b"hello")
        )
        sub.ack(msg)
        sub.stop()
        pub.stop()
    finally:
        proc.terminate()
        proc.wait(10)
