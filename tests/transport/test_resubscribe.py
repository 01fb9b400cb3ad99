"""A subscription the broker refuses is made again, with backoff, until it is accepted: what a
device needs from a cluster that refuses subscriptions while it elects new leaders after losing
a node. The broker is amqtt (MQTT 3.1.1) refusing ``cmd/dev`` twice
(:mod:`tests.transport.flaky_broker`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.services import free_port, wait_port
from tests.transport.flaky_broker import REFUSALS, REFUSED
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import mqtt_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_refused_subscriptions_are_made_again_until_accepted() -> None:
    # Prepare
    port = free_port()
    cmd = [sys.executable, "-m", "tests.transport.flaky_broker", str(port)]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as broker:  # noqa: S603
        try:
            wait_port(port, 20)
            inbox: QueueInbox[Message] = QueueInbox(10)
            settings = mqtt_settings(f"mqtt://127.0.0.1:{port}", "dev", reconnect_min_s=0.2,
                                     reconnect_max_s=0.5)  # fmt: skip
            conn = MqttConnection(settings, ["mine/a", REFUSED], on_message=inbox.put)
            # Execute
            conn.connect(10)
            refused_first = list(conn.refused_filters)
            deadline = time.monotonic() + 10
            while conn.refused_filters and time.monotonic() < deadline:
                time.sleep(0.02)
            ok = conn.publish_wait(REFUSED, b"now subscribed", timeout_s=5)
            got = inbox.get(5)
            conn.stop()
        finally:
            broker.terminate()
        attempts = broker.communicate(timeout=10)[0].split()
    # Assert: refused at connect, subscribed on the second retry (0.2 s, then 0.4 s later)
    assert refused_first == [REFUSED] and conn.refused_filters == []
    assert attempts == ["refused"] * REFUSALS + ["accepted"]
    assert ok and got is not None and (got.topic, got.payload) == (REFUSED, b"now subscribed")
