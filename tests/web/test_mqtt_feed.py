"""The web live feed against a real private mosquitto: subscribe, decode, publish labels."""

from __future__ import annotations

import threading
import time

import pytest

from common.broker_url import BrokerAddress, parse_broker_url
from common.errors import ConfigError
from common.payloads import Label, Status, decode_label, encode_chunk, encode_status
from tests.support.services import Mosquitto
from tests.web.conftest import T0_NS, ecg_chunk
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import mqtt_settings
from web.live.fanout import Fanout
from web.live.hub import LiveHub
from web.live.mqtt_feed import MqttLiveFeed


@pytest.mark.parametrize("url", ["tcp://h:1", "mqtt://", "h:1883", "", "mqtt://h:port"])
def test_bad_broker_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="mqtt://"):
        parse_broker_url(url)


def test_broker_url_forms() -> None:
    assert parse_broker_url("mqtt://127.0.0.1") == BrokerAddress("127.0.0.1", 1883)
    secure = parse_broker_url("mqtts://web:p%40ss@broker.example")
    assert secure == BrokerAddress("broker.example", 8883, True, "web", "p@ss")
    assert "p@ss" not in repr(secure)


def _wait(cond, timeout: float = 10.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.integration
def test_feed_receives_live_and_status_and_publishes_labels(mosquitto: Mosquitto) -> None:
    # Prepare
    hub = LiveHub(10.0, 10, Fanout(4, 16))
    feed = MqttLiveFeed(mosquitto.url, [hub])
    reconnected = threading.Event()
    feed.on_connected = reconnected.set
    got: QueueInbox[Message] = QueueInbox(10)
    device = MqttConnection(mqtt_settings(mosquitto.url, "dev-p1"), ["medchain/v1/label/p1"],
                            on_message=got.put)  # fmt: skip
    device.connect(10)
    feed.start()
    try:
        assert feed.wait_connected(10) and reconnected.wait(10)
        # Execute
        assert device.publish_wait(
            "medchain/v1/live/p1", encode_chunk("live", "p1", ecg_chunk(0)), timeout_s=5
        )
        assert device.publish_wait(
            "medchain/v1/status/p1", encode_status(Status("p1", True, T0_NS)), timeout_s=5
        )
        assert device.publish_wait("medchain/v1/pred/p1", b"junk", timeout_s=5)
        # The live, status and pred messages may be delivered in any order across topics:
        # wait for each effect, not just the last one published.
        assert _wait(lambda: (hub.snapshot("p1") or {}).get("status") is not None)
        assert _wait(lambda: "ecg" in (hub.snapshot("p1") or {}).get("streams", {}))
        assert _wait(lambda: feed.counters["rejected_pred"] == 1)
        sent = feed.publish_label(Label("L1", "p1", T0_NS, "S", "beat", "alice"))
        label = got.get(10)
    finally:
        feed.stop()
        device.stop()
    # Assert
    assert sent is True and feed.connection.mqtt5 and feed.dropped == 0
    assert label is not None
    assert decode_label(label.payload) == Label("L1", "p1", T0_NS, "S", "beat", "alice")
    assert len(hub.snapshot("p1")["streams"]["ecg"]["t"]) == 25
    assert feed.counters["rejected_pred"] == 1


def test_publish_label_without_broker_returns_false() -> None:
    # Prepare
    feed = MqttLiveFeed("mqtt://127.0.0.1:1", [])
    # Execute / Assert
    assert feed.publish_label(Label("L1", "p1", T0_NS, "S")) is False
