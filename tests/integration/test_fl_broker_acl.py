"""`medchain broker config` output enforced by a real mosquitto: TLS, passwords, per-client ACL."""

from __future__ import annotations

import queue
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from medchain.cli import main as medchain_main
from tests.support.services import free_port, require_service, run_mosquitto

pytestmark = pytest.mark.integration


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        require_service("openssl", "apt-get install openssl")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class Client:
    """A paho client that records deliveries and the connection result."""

    def __init__(
        self,
        port: int,
        cert: Path,
        user: str | None,
        password: str | None,
        client_id: str | None = None,
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.result: queue.Queue[str] = queue.Queue()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{user}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if user:
            self.c.username_pw_set(user, password)
        self.c.tls_set(ca_certs=str(cert), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.c.on_connect = lambda c, u, f, rc, p: self.result.put(str(rc))
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def connected(self) -> str:
        return self.result.get(timeout=10)

    def sub(self, flt: str) -> None:
        self.c.subscribe(flt, qos=1)
        time.sleep(0.3)

    def pub(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def drain(self, wait: float = 0.8) -> list[tuple[str, bytes]]:
        time.sleep(wait)
        out = []
        while not self.messages.empty():
            out.append(self.messages.get())
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_generated_config_enforces_per_client_acl_over_tls(tmp_path: Path) -> None:
    # Prepare: config for two devices, the aggregator and the web, with a self-signed cert;
    # `user root` keeps the broker able to read the root-owned, mode-600 test files
    import json

    cert, key = _self_signed(tmp_path)
    port = free_port()
    out = tmp_path / "broker"
    rc = medchain_main(
        [
            "broker",
            "config",
            "--out",
            str(out),
            "--clients",
            "dev-a,dev-b",
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
        ]
    )
    creds = json.loads((out / "credentials.json").read_text())
    conf = (out / "mosquitto.conf").read_text().replace(
        "persistence true", "persistence false"
    ) + "user root\n"
    assert (
        rc == 0
        and "dev-a:" in (out / "passwd").read_text()
        and creds["dev-a"] not in (out / "passwd").read_text()
    )
    with run_mosquitto(extra_conf=conf, port=port):
        agg = Client(port, cert, "aggregator", creds["aggregator"])
        a = Client(port, cert, "dev-a", creds["dev-a"])
        b = Client(port, cert, "dev-b", creds["dev-b"])
        anon = Client(port, cert, None, None)
        wrong = Client(port, cert, "dev-a", "not-the-password")
        try:
            # Assert: authentication
            assert agg.connected() == a.connected() == b.connected() == "Success"
            assert anon.connected() != "Success" and wrong.connected() != "Success"
            agg.sub("$share/agg/medchain/v1/update/#")
            a.sub("medchain/v1/update/#")  # tries to read everyone's updates
            a.sub("medchain/v1/round/#")
            # Execute
            a.pub("medchain/v1/update/dev-a", b"own")
            a.pub("medchain/v1/update/dev-b", b"forged")  # publish as B
            b.pub("medchain/v1/update/dev-b", b"b-own")
            agg.pub("medchain/v1/round/current", b"round", retain=True)
            b.pub(
                "medchain/v1/round/current", b"fake round", retain=True
            )  # devices cannot announce
            # Assert: the aggregator got exactly the two genuine updates
            got = sorted(agg.drain())
            assert got == [
                ("medchain/v1/update/dev-a", b"own"),
                ("medchain/v1/update/dev-b", b"b-own"),
            ]
            a_got = a.drain()
            assert ("medchain/v1/update/dev-b", b"b-own") not in a_got  # A cannot read B's update
            assert ("medchain/v1/round/current", b"round") in a_got
            assert all(p != b"fake round" for _, p in a_got)
        finally:
            for c in (agg, a, b, anon, wrong):
                c.close()


def _config(tmp_path: Path, port: int, clients: str) -> tuple[str, dict[str, str], Path]:
    import json

    cert, key = _self_signed(tmp_path)
    out = tmp_path / "broker"
    rc = medchain_main(["broker", "config", "--out", str(out), "--clients", clients,
                        "--certfile", str(cert), "--keyfile", str(key), "--port", str(port),
                        "--bind", "127.0.0.1"])  # fmt: skip
    assert rc == 0
    conf = (out / "mosquitto.conf").read_text().replace(
        "persistence true", "persistence false"
    ) + "user root\n"
    return conf, json.loads((out / "credentials.json").read_text()), cert


def test_a_device_cannot_take_over_another_devices_session(tmp_path: Path) -> None:
    # Prepare: B connected with a persistent session and subscribed to its labels
    port = free_port()
    conf, creds, cert = _config(tmp_path, port, "dev-a,dev-b")
    with run_mosquitto(extra_conf=conf, port=port):
        b = Client(port, cert, "dev-b", creds["dev-b"], client_id="dev-b")
        assert b.connected() == "Success"
        b.sub("medchain/v1/label/dev-b")
        drops: list[object] = []
        b.c.on_disconnect = lambda c, u, f, rc, p: drops.append(rc)
        # Execute: A logs in with its own password but asks for B's client id
        a = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-b", protocol=mqtt.MQTTv5)
        a.username_pw_set("dev-a", creds["dev-a"])
        a.tls_set(ca_certs=str(cert), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        a.connect("127.0.0.1", port, keepalive=10)
        a.loop_start()
        time.sleep(1.0)
        web = Client(port, cert, "web", creds["web"])
        try:
            assert web.connected() == "Success"
            web.pub("medchain/v1/label/dev-b", b"label for b")
            # Assert: B was never disconnected and still gets its label
            assert drops == [] and b.c.is_connected()
            assert ("medchain/v1/label/dev-b", b"label for b") in b.drain()
        finally:
            a.loop_stop()
            a.disconnect()
            for c in (b, web):
                c.close()


@pytest.mark.parametrize("name", ["web", "aggregator"])
def test_broker_config_refuses_devices_named_like_services(tmp_path: Path, name: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rc = medchain_main(["broker", "config", "--out", str(tmp_path / "b"), "--clients",
                        f"dev-a,{name}"])  # fmt: skip
    assert rc != 0
    assert "collide with service accounts" in capsys.readouterr().err
    assert not (tmp_path / "b" / "acl").exists()
