"""How every MedChain process connects to the broker: one frozen settings object from one URL.

The URL is ``mqtt[s]://[user[:password]@]host[:port][?option=value&...]``
(:func:`common.broker_url.parse_broker_url` reads the part before ``?``). Options:

``ca``
    CA bundle (PEM) that signs the broker's certificate (``mqtts`` only; default: the
    system's trust store).
``cert``, ``key``
    Client certificate and its key (PEM) for brokers that require one (``mqtts`` only;
    ``key`` may be left out when ``cert`` holds both).
``protocol``
    ``auto`` (default: MQTT 5, then 3.1.1 when the broker answers that it does not speak 5),
    ``5`` or ``3.1.1`` (forced).

So the same string configures the device, the aggregator, the web feed and the tools, and a
broker that speaks only MQTT 3.1.1 needs no change anywhere but, at most, ``?protocol=3.1.1``.
Pure: nothing here opens a file or a socket.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from common.broker_url import BrokerAddress, parse_broker_url
from common.errors import ConfigError, MedchainError

SHARE_PREFIX = "$share/"


class BrokerUnavailableError(MedchainError):
    """No MQTT session (or subscription) could be established within the timeout."""


class MqttProtocol(StrEnum):
    """MQTT protocol version: negotiated (5 first), or forced."""

    AUTO = "auto"
    V5 = "5"
    V311 = "3.1.1"


@dataclass(frozen=True)
class Will:
    """Last Will: what the broker publishes for the client when its connection is lost.

    The same topic carries the retained status the connection publishes itself (online on
    every connect, offline on a clean stop), so a late subscriber always sees the last one.
    """

    topic: str
    payload: bytes = b""  # a connection with a status builder sets it before each CONNECT
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class MqttSettings:
    """Everything one MQTT connection needs (the password never appears in a repr).

    Attributes
    ----------
    address : BrokerAddress
        Host, port, TLS on/off and credentials (from the URL).
    client_id : str
        MQTT client id; fixed for a persistent session.
    protocol : MqttProtocol
        ``AUTO``: MQTT 5, falling back to 3.1.1 when the broker refuses 5.
    ca_file, cert_file, key_file : str or None
        TLS trust (None: system trust store) and client certificate.
    clean : bool
        True: a new session on every connect. False: a persistent session (MQTT 5 session
        expiry ``session_expiry_s``; on 3.1.1 the broker's own expiry applies).
    session_expiry_s : int
        MQTT 5 session expiry of a persistent session, s.
    keepalive_s : int
        MQTT keepalive, s (the broker publishes the Will after 1.5 times this).
    reconnect_min_s, reconnect_max_s : float
        Reconnect backoff, s: doubles from min to max after every failed attempt.
    will : Will or None
        Last Will (and the topic of the retained online/offline status).
    manual_ack : bool
        Inbound QoS 1 messages are acknowledged only by :meth:`MqttConnection.ack`.
    max_inflight : int
        QoS 1 messages in flight at once (more wait in the client's queue).
    max_queued : int
        QoS 1 messages the client keeps (in flight or waiting) before refusing new ones
        (0: no limit).
    subscribe_qos : int
        QoS of the subscriptions.
    protocol_probe_s : float
        ``AUTO`` only: a broker that does not answer an MQTT 5 CONNECT within this many
        seconds, before the first session, is taken for a 3.1.1 one.
    """

    address: BrokerAddress
    client_id: str
    protocol: MqttProtocol = MqttProtocol.AUTO
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    clean: bool = True
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    will: Will | None = None
    manual_ack: bool = False
    max_inflight: int = 20
    max_queued: int = 0
    subscribe_qos: int = 1
    protocol_probe_s: float = 5.0

    @property
    def label(self) -> str:
        """``mqtt[s]://host:port``: the broker for logs and errors (no credentials)."""
        a = self.address
        return f"{'mqtts' if a.tls else 'mqtt'}://{a.host}:{a.port}"

    def __post_init__(self) -> None:
        if (self.ca_file or self.cert_file or self.key_file) and not self.address.tls:
            raise ConfigError("ca/cert/key need an mqtts:// broker URL")
        if self.key_file and not self.cert_file:
            raise ConfigError("a client key needs its certificate (cert=...)")
        if not self.client_id:
            raise ConfigError("an MQTT client id is required")
        if min(self.keepalive_s, self.max_inflight, self.protocol_probe_s) <= 0:
            raise ConfigError("keepalive_s, max_inflight and protocol_probe_s must be > 0")
        if self.session_expiry_s < 0:
            raise ConfigError("session_expiry_s must be >= 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("reconnect backoff needs 0 < reconnect_min_s <= reconnect_max_s")
        if self.subscribe_qos not in (0, 1, 2):
            raise ConfigError(f"subscribe_qos must be 0, 1 or 2, got {self.subscribe_qos}")


_URL_OPTIONS = {"ca": "ca_file", "cert": "cert_file", "key": "key_file", "protocol": "protocol"}


def mqtt_settings(url: str, client_id: str, **overrides: Any) -> MqttSettings:
    """Settings from a broker URL and its options, then ``overrides`` (keyword = attribute).

    An override given as None keeps the URL's value (so ``ca_file=settings.ca_file or None``
    can be passed through unconditionally).

    Raises
    ------
    ConfigError
        On a malformed URL, an unknown or repeated option, or inconsistent settings.

    Examples
    --------
    >>> s = mqtt_settings("mqtts://dev:pw@broker:8883?ca=/etc/ca.pem&protocol=3.1.1", "dev-1")
    >>> (s.address.port, s.ca_file, s.protocol.value)
    (8883, '/etc/ca.pem', '3.1.1')
    """
    address = parse_broker_url(url)
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise ConfigError(f"unknown broker URL option {key!r} (known: {sorted(_URL_OPTIONS)})")
        if _URL_OPTIONS[key] in fields:
            raise ConfigError(f"broker URL option {key!r} given twice")
        fields[_URL_OPTIONS[key]] = value or None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if "protocol" in fields:
        fields["protocol"] = parse_protocol(str(fields["protocol"]))
    try:
        return MqttSettings(address, client_id, **fields)
    except TypeError as exc:  # an override that is not a field
        raise ConfigError(f"bad MQTT setting: {exc}") from exc


def parse_protocol(text: str) -> MqttProtocol:
    """``auto``, ``5`` (or ``5.0``) or ``3.1.1`` -> :class:`MqttProtocol`.

    Raises
    ------
    ConfigError
        On another value.
    """
    value = {"5.0": "5", "v5": "5", "311": "3.1.1", "v3.1.1": "3.1.1"}.get(text.lower(), text)
    try:
        return MqttProtocol(value.lower())
    except ValueError:
        raise ConfigError(f"MQTT protocol must be auto, 5 or 3.1.1, got {text!r}") from None


def random_client_id(prefix: str) -> str:
    """``prefix-xxxxxxxx``: a client id for a clean, throw-away session (web feed, tools)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subscription_filter(topic_filter: str, mqtt5: bool) -> str:
    """The filter to subscribe on this protocol: a ``$share/<group>/`` prefix (an MQTT 5 shared
    subscription) is removed on 3.1.1, where every subscriber then gets every message.

    >>> subscription_filter("$share/agg/medchain/v1/update/+", mqtt5=False)
    'medchain/v1/update/+'
    """
    if mqtt5 or not topic_filter.startswith(SHARE_PREFIX):
        return topic_filter
    parts = topic_filter.split("/", 2)
    return parts[2] if len(parts) == 3 else topic_filter
