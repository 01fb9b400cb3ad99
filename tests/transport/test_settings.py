"""Broker URL options -> MqttSettings, and the pure helpers of the transport."""

from __future__ import annotations

import pytest

from common.broker_url import BrokerAddress
from common.errors import ConfigError
from transport.settings import (
    MqttProtocol,
    Will,
    mqtt_settings,
    parse_protocol,
    random_client_id,
    subscription_filter,
)


def test_url_options_become_settings() -> None:
    # Execute
    s = mqtt_settings(
        "mqtts://dev:p%40ss@broker.example?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem&protocol=3.1.1",
        "dev-1",
    )
    # Assert
    assert s.address == BrokerAddress("broker.example", 8883, True, "dev", "p@ss")
    assert (s.ca_file, s.cert_file, s.key_file) == ("/etc/ca.pem", "/c.pem", "/k.pem")
    assert s.protocol is MqttProtocol.V311 and s.client_id == "dev-1"
    assert "p@ss" not in repr(s)


def test_defaults_and_overrides() -> None:
    # Execute
    plain = mqtt_settings("mqtt://127.0.0.1", "x")
    tuned = mqtt_settings(
        "mqtts://h?ca=/url-ca.pem",
        "x",
        ca_file=None,  # None keeps the URL's value
        clean=False,
        will=Will("s/x", b"off"),
        protocol="5",
    )
    # Assert
    assert plain.protocol is MqttProtocol.AUTO and plain.clean and plain.ca_file is None
    assert tuned.ca_file == "/url-ca.pem" and not tuned.clean and tuned.protocol is MqttProtocol.V5
    assert tuned.will == Will("s/x", b"off", 1, True)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mqtt://h?ca=/ca.pem", "mqtts"),  # TLS files on a plain connection
        ("mqtts://h?key=/k.pem", "certificate"),
        ("mqtt://h?protocol=4", "auto, 5 or 3.1.1"),
        ("mqtt://h?tls=1", "unknown broker URL option"),
        ("mqtt://h?protocol=5&protocol=3.1.1", "twice"),
        ("tcp://h:1", "mqtt://"),
    ],
)
def test_bad_urls_are_config_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mqtt_settings(url, "x")


@pytest.mark.parametrize(
    "overrides",
    [{"keepalive_s": 0}, {"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}, {"subscribe_qos": 3},
     {"no_such_setting": 1}],
)  # fmt: skip
def test_bad_settings_are_config_errors(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        mqtt_settings("mqtt://h", "x", **overrides)


def test_an_empty_client_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="client id"):
        mqtt_settings("mqtt://h", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("auto", MqttProtocol.AUTO), ("5", MqttProtocol.V5), ("5.0", MqttProtocol.V5),
     ("3.1.1", MqttProtocol.V311), ("V3.1.1", MqttProtocol.V311)],
)  # fmt: skip
def test_protocol_names(text: str, expected: MqttProtocol) -> None:
    assert parse_protocol(text) is expected


@pytest.mark.parametrize(
    ("flt", "mqtt5", "expected"),
    [
        ("$share/agg/medchain/v1/update/+", True, "$share/agg/medchain/v1/update/+"),
        ("$share/agg/medchain/v1/update/+", False, "medchain/v1/update/+"),
        ("$share/agg/#", False, "#"),
        ("medchain/v1/label/dev-1", False, "medchain/v1/label/dev-1"),
        ("$SYS/broker/uptime", False, "$SYS/broker/uptime"),
    ],
)
def test_shared_subscriptions_lose_their_prefix_on_311(
    flt: str, mqtt5: bool, expected: str
) -> None:
    assert subscription_filter(flt, mqtt5) == expected


def test_random_client_ids_differ() -> None:
    a, b = random_client_id("medchain-web"), random_client_id("medchain-web")
    assert a != b and a.startswith("medchain-web-") and len(a) == len("medchain-web-") + 8


def test_the_label_shows_the_broker_without_credentials() -> None:
    s = mqtt_settings("mqtts://dev:s3cret@broker.example", "dev")
    assert s.label == "mqtts://broker.example:8883"
