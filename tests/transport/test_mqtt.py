"""The one MQTT adapter against a real private mosquitto: protocol choice, Will and status,
reconnect, manual acknowledgement, publish acknowledgements, credentials and TLS."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common.payloads import WILL_SEQ
from tests.support.services import Mosquitto, free_port, run_mosquitto
from tests.transport.conftest import Pki
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import BrokerUnavailableError, Will, mqtt_settings

pytestmark = pytest.mark.integration


def _conn(url: str, cid: str, subs: list[str] | None = None, **kw: object) -> tuple[MqttConnection, QueueInbox[Message]]:  # fmt: skip
    inbox: QueueInbox[Message] = QueueInbox(1000)
    conn = MqttConnection(mqtt_settings(url, cid, **kw), subs or [], on_message=inbox.put)
    return conn, inbox


def test_auto_speaks_mqtt5_and_a_forced_311_client_talks_to_it(mosquitto: Mosquitto) -> None:
    # Prepare
    v5, inbox5 = _conn(mosquitto.url, "c5", ["t/to5"])
    v3, inbox3 = _conn(f"{mosquitto.url}?protocol=3.1.1", "c311", ["$share/g/t/to3"])
    acks: list[bool] = []
    try:
        v5.connect(5)
        v3.connect(5)
        # Execute
        sent = v5.publish("t/to3", b"a", on_ack=acks.append)
        ok = v3.publish_wait("t/to5", b"b", timeout_s=5)
        got3, got5 = inbox3.get(5), inbox5.get(5)
    finally:
        v5.stop()
        v3.stop()
    # Assert: the $share prefix was dropped on 3.1.1 (else nothing would match)
    assert v5.mqtt5 and not v3.mqtt5
    assert sent and ok and acks == [True]
    assert got3 is not None and (got3.topic, got3.payload) == ("t/to3", b"a")
    assert got5 is not None and (got5.topic, got5.payload) == ("t/to5", b"b")


DEVICE = """
import sys, time
from transport.mqtt import MqttConnection
from transport.settings import Will, mqtt_settings
s = mqtt_settings(sys.argv[1], "dev-will", will=Will("st/dev-will"), keepalive_s=5)
c = MqttConnection(s, status=lambda on, detail, session, seq: f"{on} {detail} {session} {seq}".encode())
c.connect(10)
print("up", flush=True)
time.sleep(60)
"""


def test_will_on_a_lost_connection_and_retained_status(mosquitto: Mosquitto) -> None:
    # Prepare: a watcher; a device process that will be killed
    watcher, seen = _conn(mosquitto.url, "watcher", ["st/#"])
    watcher.connect(5)
    cmd = [sys.executable, "-c", DEVICE, mosquitto.url]
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:  # noqa: S603
            assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
            online = seen.get(5)
            # Execute: the device dies without a DISCONNECT
            proc.kill()
        lost = seen.get(10)
        # a clean stop publishes the offline status instead of the Will
        dev = MqttConnection(mqtt_settings(mosquitto.url, "dev-2", will=Will("st/dev-2")),
                             status=_status)  # fmt: skip
        dev.connect(5)
        dev.stop("stopped")
        statuses = [m.payload.split() for m in (seen.get(5), seen.get(5)) if m is not None]
        after = seen.get(1.5)  # no Will after a clean stop
    finally:
        watcher.stop()
    # Assert
    # the Will closes the session its online status opened: after every status of it
    assert online is not None and online.topic == "st/dev-will"
    assert lost is not None and lost.topic == "st/dev-will"
    on, off = online.payload.split(), lost.payload.split()
    assert on[0] == b"True" and off[:3] == [b"False", b"connection", b"lost"]
    assert on[-2] == off[-2] and int(on[-1]) < int(off[-1]) == WILL_SEQ
    assert [s[0] for s in statuses] == [b"True", b"False"] and statuses[1][1] == b"stopped"
    assert statuses[0][-2] == statuses[1][-2] and int(statuses[1][-1]) > int(statuses[0][-1])
    assert after is None


def _status(online: bool, detail: str, session: int, seq: int) -> bytes:
    return f"{online} {detail or '-'} {session} {seq}".encode()


def test_reconnect_resubscribes_and_republishes_the_online_status() -> None:
    # Prepare
    port = free_port()
    calls: list[tuple[bool, int, int]] = []
    inbox: QueueInbox[Message] = QueueInbox(10)

    def status(online: bool, detail: str, session: int, seq: int) -> bytes:
        calls.append((online, session, seq))
        return _status(online, detail, session, seq)

    with run_mosquitto(port=port) as first:
        settings = mqtt_settings(first.url, "dev-r", reconnect_min_s=0.2, reconnect_max_s=0.5,
                                 will=Will("st/dev-r"))  # fmt: skip
        conn = MqttConnection(settings, ["cmd/dev-r"], on_message=inbox.put, status=status)
        conn.connect(5)
    # Execute: the broker restarts (no persistence: subscriptions forgotten)
    try:
        deadline = time.monotonic() + 5
        while conn.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not conn.connected
        with run_mosquitto(port=port) as second:
            assert conn.wait_connected(10)
            other, _ = _conn(second.url, "ctl")
            other.connect(5)
            assert other.publish_wait("cmd/dev-r", b"after restart", timeout_s=5)
            got = inbox.get(5)
            other.stop()
    finally:
        conn.stop()
    # Assert
    # each connect: a new session, its Will, then its online status
    online = [c for c in calls if c[0]]
    assert conn.connects == 2 and len(online) == 2 and online[0][1] < online[1][1]
    for _, session, seq in online:
        assert (False, session, WILL_SEQ) in calls and seq == 1
    assert got is not None and got.payload == b"after restart"


def test_manual_ack_unacknowledged_messages_come_back_after_a_restart(mosquitto: Mosquitto) -> None:
    # Prepare: a persistent session with manual acknowledgement (the aggregator's)
    def agg() -> tuple[MqttConnection, QueueInbox[Message]]:
        return _conn(mosquitto.url, "agg-m", ["up/#"], clean=False, manual_ack=True)

    pub, _ = _conn(mosquitto.url, "pub")
    pub.connect(5)
    first, inbox = agg()
    first.connect(5)
    for payload in (b"stored", b"not stored"):
        assert pub.publish_wait("up/dev", payload, timeout_s=5)
    a, b = inbox.get(5), inbox.get(5)
    assert a is not None and b is not None
    # Execute: only the first is acknowledged before the process goes away
    first.ack(a.mid, a.qos)
    time.sleep(0.3)
    first.stop()
    second, inbox2 = agg()
    second.connect(5)
    again = inbox2.get(5)
    extra = inbox2.get(0.5)
    if again is not None:
        second.ack(again.mid, again.qos)
    second.stop()
    pub.stop()
    # Assert
    assert again is not None and again.payload == b"not stored" and extra is None


ACL_CONF = """
listener {port} 127.0.0.1
allow_anonymous false
password_file {pw}
acl_file {acl}
"""


@pytest.fixture()
def secured(tmp_path: Path) -> Mosquitto:
    pw, acl = tmp_path / "pw", tmp_path / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "dev", "s3cret"], check=True,  # noqa: S603,S607
                   capture_output=True)  # fmt: skip
    acl.write_text("user dev\ntopic readwrite mine/#\n")
    pw.chmod(0o600)
    acl.chmod(0o600)
    with run_mosquitto(ACL_CONF.format(port="{port}", pw=pw, acl=acl) + "user root\n") as m:
        yield m  # type: ignore[misc]


def test_credentials_from_the_url_and_refusals(secured: Mosquitto) -> None:
    # Prepare
    base = f"127.0.0.1:{secured.port}"
    good = MqttConnection(mqtt_settings(f"mqtt://dev:s3cret@{base}", "dev"))
    acks: list[bool] = []
    done = threading.Event()
    # Execute
    good.connect(5)
    good.publish("mine/x", b"ok", on_ack=lambda ok: (acks.append(ok), done.set()))
    done.wait(5)
    refused = good.publish_wait("theirs/x", b"no", timeout_s=5)  # ACL: MQTT 5 PUBACK 0x87
    good.stop()
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="user name or password|authori"):
        MqttConnection(mqtt_settings(f"mqtt://dev:wrong@{base}", "dev")).connect(10)
    # Assert: a wrong password fails at once, not after the timeout
    assert acks == [True] and refused is False
    assert time.monotonic() - t0 < 5


def test_connect_without_a_broker_is_bounded() -> None:
    conn = MqttConnection(mqtt_settings(f"mqtt://127.0.0.1:{free_port()}", "nobody"))
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="within 0.5 s"):
        conn.connect(0.5)
    assert time.monotonic() - t0 < 3 and not conn.connected


TLS_CONF = """
listener {{port}} 127.0.0.1
allow_anonymous true
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate {require}
user root
"""


def _tls_broker(pki: Pki, require: bool):  # type: ignore[no-untyped-def]
    conf = TLS_CONF.format(ca=pki.ca, cert=pki.server_cert, key=pki.server_key,
                           require=str(require).lower())  # fmt: skip
    return run_mosquitto(conf)


def test_tls_with_a_ca_file_and_with_a_client_certificate(pki: Pki) -> None:
    # Prepare
    with _tls_broker(pki, require=False) as m, _tls_broker(pki, require=True) as m_cert:
        ca = f"mqtts://127.0.0.1:{m.port}?ca={pki.ca}"
        cert = f"mqtts://127.0.0.1:{m_cert.port}?ca={pki.ca}&cert={pki.client_cert}&key={pki.client_key}"
        a = MqttConnection(mqtt_settings(ca, "tls-ca"))
        b = MqttConnection(mqtt_settings(cert, "tls-cert"))
        # Execute
        a.connect(5)
        b.connect(5)
        ok = a.publish_wait("t", b"x", timeout_s=5) and b.publish_wait("t", b"y", timeout_s=5)
        a.stop()
        b.stop()
    # Assert
    assert ok


# paho leaves the socket of a failed TLS handshake to the garbage collector (ResourceWarning)
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_tls_refusals_are_bounded_errors(pki: Pki) -> None:
    with _tls_broker(pki, require=False) as m, _tls_broker(pki, require=True) as m_cert:
        url, url_cert = f"mqtts://127.0.0.1:{m.port}", f"mqtts://127.0.0.1:{m_cert.port}"
        # a broker certificate the CA file, or the system trust store, does not vouch for
        for bad in (f"{url}?ca={pki.other_ca}", url, f"{url_cert}?ca={pki.ca}"):  # last: no cert
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailableError):
                MqttConnection(mqtt_settings(bad, "tls-bad")).connect(1.5)
            assert time.monotonic() - t0 < 4


def test_unreadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="TLS"):
        MqttConnection(mqtt_settings(f"mqtts://h?ca={tmp_path / 'missing.pem'}", "x"))
