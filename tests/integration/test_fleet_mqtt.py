"""The simulated fleet's devices connect as the broker URL says: credentials (and TLS files,
protocol) in the URL are honoured, like every other MQTT client of the system."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.payloads import decode_status
from common.protocol import Channel, client_topic
from edge_agent.federated import FederatedParticipant, NpzExamples, run_client
from tests.cloud_aggregator.fl_support import write_client_data
from tests.support.services import Mosquitto, run_mosquitto
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import mqtt_settings

pytestmark = pytest.mark.integration

CONF = """
listener {port} 127.0.0.1
allow_anonymous false
password_file {pw}
user root
"""


@pytest.fixture()
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    pw = tmp_path / "passwords"
    for i, (user, password) in enumerate([("sim-000", "dev pw"), ("watch", "watch pw")]):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(pw), user,  # noqa: S603,S607
                        password], check=True, capture_output=True)  # fmt: skip
    pw.chmod(0o600)
    with run_mosquitto(CONF.format(port="{port}", pw=pw)) as m:
        yield m


def test_fleet_client_logs_in_with_the_credentials_of_the_url(
    password_broker: Mosquitto, tmp_path: Path
) -> None:
    # Prepare: a watcher of the device's retained status, one simulated device
    (cid,) = write_client_data(tmp_path / "data", 1)
    base = f"127.0.0.1:{password_broker.port}"
    statuses: QueueInbox[Message] = QueueInbox(10)
    watcher = MqttConnection(mqtt_settings(f"mqtt://watch:watch%20pw@{base}", "watch"),
                             [client_topic(Channel.STATUS, cid)], on_message=statuses.put)  # fmt: skip
    watcher.connect(5)
    device = FederatedParticipant(
        cid, NpzExamples(tmp_path / "data" / f"{cid}.npz"), tmp_path / cid
    )
    stop = threading.Event()
    t = threading.Thread(target=run_client, args=(f"mqtt://{cid}:dev%20pw@{base}", device, stop))
    # Execute
    t.start()
    try:
        online = statuses.get(10)
    finally:
        stop.set()
        t.join(10)
    offline = statuses.get(5)
    watcher.stop()
    # Assert: online while it ran, offline ("stopped", not the Will) after
    assert online is not None and decode_status(online.payload).online
    assert offline is not None and decode_status(offline.payload).online is False
    assert decode_status(offline.payload).detail == "stopped"
