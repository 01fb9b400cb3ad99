"""Broker URLs: ``mqtt[s]://[user[:password]@]host[:port]`` -> :class:`BrokerAddress`.

One parser for every MQTT adapter (edge uplink, MQTT replay, aggregator, web feed), so a URL
means the same thing everywhere. ``mqtts`` is TLS with certificate verification, default port
8883; ``mqtt`` defaults to 1883. User and password are percent-decoded.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from common.errors import ConfigError


class BrokerAddress(NamedTuple):
    """Where and how to connect to an MQTT broker (the password never appears in a repr)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        pw = "***" if self.password else None
        return (
            f"BrokerAddress(host={self.host!r}, port={self.port}, tls={self.tls}, "
            f"username={self.username!r}, password={pw!r})"
        )

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Same as :func:`parse_broker_url`."""
        return parse_broker_url(url)


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL.

    Raises
    ------
    ConfigError
        On another scheme, a missing host or an invalid port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"broker URL must look like mqtt://host:1883: {exc}") from exc
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"broker URL must look like mqtt://host:1883, got {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        parts.hostname,
        port or (8883 if tls else 1883),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
