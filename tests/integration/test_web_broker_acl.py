"""The web's live feed as the ``web`` user of the generated production broker config:
TLS with certificate verification, password, ACL (reads pred/live/status, writes labels)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.payloads import Label, decode_label
from common.pred_payloads import encode_predictions
from medchain.cli import main as medchain_main
from tests.support.services import free_port, require_service, run_mosquitto
from tests.web.conftest import T0_NS, beat
from web.live.fanout import Fanout
from web.live.hub import LiveHub
from web.live.mqtt_feed import MqttLiveFeed

pytestmark = pytest.mark.integration


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        require_service("openssl", "apt-get install openssl")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)  # fmt: skip
    return cert, key


def _wait(cond, timeout: float = 10.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_web_user_over_tls_reads_predictions_and_delivers_labels(tmp_path: Path) -> None:
    # Prepare: the production config for device p1 (as `medchain broker config` writes it)
    cert, key = _self_signed(tmp_path)
    port = free_port()
    out = tmp_path / "broker"
    assert medchain_main(["broker", "config", "--out", str(out), "--clients", "p1", "--certfile", str(cert),
                          "--keyfile", str(key), "--port", str(port), "--bind", "127.0.0.1"]) == 0  # fmt: skip
    creds = json.loads((out / "credentials.json").read_text())
    conf = (out / "mosquitto.conf").read_text().replace(
        "persistence true", "persistence false"
    ) + "user root\n"
    with run_mosquitto(extra_conf=conf, port=port):
        hub = LiveHub(10.0, 10, Fanout(4, 16))
        feed = MqttLiveFeed(
            f"mqtts://web:{creds['web']}@127.0.0.1:{port}", [hub], ca_file=str(cert)
        )
        intruder = MqttLiveFeed(
            f"mqtts://web:wrong-password@127.0.0.1:{port}", [hub], ca_file=str(cert)
        )
        labels: list[bytes] = []
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="p1")
        device.username_pw_set("p1", creds["p1"])
        device.tls_set(ca_certs=str(cert), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        device.on_message = lambda c, u, m: labels.append(bytes(m.payload))
        device.connect("127.0.0.1", port)
        device.loop_start()
        feed.start()
        intruder.start()
        try:
            assert feed.wait_connected(10)
            device.subscribe("medchain/v1/label/p1", qos=1)
            time.sleep(0.3)
            # Execute
            device.publish(
                "medchain/v1/pred/p1", encode_predictions("p1", [beat(T0_NS, "V")], []), qos=1
            ).wait_for_publish(5)
            got_pred = _wait(lambda: (hub.snapshot("p1") or {}).get("latest_beat") is not None)
            sent = feed.publish_label(Label("L9", "p1", T0_NS, "S", "beat", "alice"))
            got_label = _wait(lambda: bool(labels))
        finally:
            feed.stop()
            intruder.stop()
            device.loop_stop()
            device.disconnect()
    # Assert
    assert got_pred and sent and got_label
    assert decode_label(labels[0]).label_id == "L9"
    assert not intruder.connected
