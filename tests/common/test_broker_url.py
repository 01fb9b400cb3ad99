"""Broker URL parsing shared by every MQTT adapter (pure)."""

from __future__ import annotations

import pytest

from common.broker_url import BrokerAddress, parse_broker_url
from common.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", ("127.0.0.1", 1883, False, None, None)),
        ("mqtts://broker", ("broker", 8883, True, None, None)),
        ("mqtts://u:p%40ss@host:8884", ("host", 8884, True, "u", "p@ss")),
        ("mqtt://agg@[::1]:1884", ("::1", 1884, False, "agg", None)),
    ],
)
def test_parse_broker_url(url: str, expected: tuple[object, ...]) -> None:
    # Execute
    addr = parse_broker_url(url)
    # Assert
    assert addr == expected
    assert BrokerAddress.parse(url) == addr


@pytest.mark.parametrize(
    "url", ["http://host", "mqtt://", "127.0.0.1:1883", "mqtt://host:99999", "mqtt://host:x"]
)
def test_bad_broker_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_broker_url(url)


def test_password_never_in_repr() -> None:
    addr = parse_broker_url("mqtts://dev:s3cret@host")
    assert "s3cret" not in repr(addr) and addr.password == "s3cret"
