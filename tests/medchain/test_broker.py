"""Both single-machine brokers accept a publish/subscribe round trip (integration)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from medchain.broker import BrokerStartError, free_port, start_broker


def _round_trip(port: int, protocol: mqtt.MQTTProtocolVersion) -> bytes:
    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("medchain/v1/pred/+", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        for _ in range(50):  # the subscription is live once a message gets through
            pub.publish("medchain/v1/pred/dev-1", b"hello", qos=1).wait_for_publish(5)
            if done.wait(0.2):
                break
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()
    assert got, "no message came back"
    return got[0]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("prefer", "protocol"),
    [("mosquitto", mqtt.MQTTProtocolVersion.MQTTv5), ("amqtt", mqtt.MQTTProtocolVersion.MQTTv311)],
)
def test_broker_round_trip(prefer: str, protocol: mqtt.MQTTProtocolVersion) -> None:
    # Prepare
    broker = start_broker(free_port(), prefer=prefer)
    try:
        # Execute
        payload = _round_trip(broker.port, protocol)
        # Assert
        assert payload == b"hello"
        assert broker.kind == prefer
    finally:
        broker.stop()
    assert broker.process.poll() is not None


def test_taken_port_is_refused() -> None:
    broker = start_broker(free_port(), prefer="mosquitto")
    try:
        with pytest.raises(BrokerStartError, match="in use"):
            start_broker(broker.port)
    finally:
        broker.stop()
