"""Building a paho-mqtt 2.x client from :class:`~transport.settings.MqttSettings`.

One place for what every connection needs before it connects: ``CallbackAPIVersion.VERSION2``,
the protocol version, clean or persistent session (``clean_session`` on 3.1.1, ``clean_start``
plus a session expiry on MQTT 5), credentials, TLS, Last Will, reconnect backoff and the
in-flight limits. :class:`transport.mqtt.MqttConnection` wires the callbacks.
"""

from __future__ import annotations

import ssl
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.errors import ConfigError
from transport.settings import MqttSettings


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """A client TLS context: server certificate and host name verified, TLS 1.2 or newer;
    trust from ``settings.ca_file`` or the system store, the client certificate if given.

    Raises
    ------
    ConfigError
        When the CA file or the client certificate cannot be read.
    """
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
        if settings.cert_file:
            ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"MQTT TLS files unusable: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def new_client(settings: MqttSettings, mqtt5: bool, tls: ssl.SSLContext | None) -> mqtt.Client:
    """A configured, unconnected client (no callbacks yet)."""
    s = settings
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        clean_session=None if mqtt5 else s.clean,
        manual_ack=s.manual_ack,
    )
    if s.address.username is not None:
        c.username_pw_set(s.address.username, s.address.password)
    if tls is not None:
        c.tls_set_context(tls)
    if s.will is not None and s.will.payload:  # else the connection sets it before each CONNECT
        c.will_set(s.will.topic, s.will.payload, qos=s.will.qos, retain=s.will.retain)
    c.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)  # type: ignore[arg-type]
    c.max_inflight_messages_set(s.max_inflight)
    c.max_queued_messages_set(s.max_queued)
    return c


def connect_in_background(client: mqtt.Client, settings: MqttSettings, mqtt5: bool) -> None:
    """Start ``client``'s network thread, connecting and reconnecting with backoff."""
    s = settings
    props = None
    clean: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY  # 3.1.1: clean_session above
    if mqtt5:
        clean = s.clean
        if not s.clean:  # a clean session's expiry is 0, the default: no property
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.session_expiry_s
    client.connect_async(
        s.address.host, s.address.port, s.keepalive_s, clean_start=clean, properties=props
    )
    client.loop_start()


def expiry_properties(expiry_s: float) -> Properties:
    """MQTT 5 PUBLISH properties with a message expiry of ``expiry_s`` s (at least 1 s)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = max(1, int(expiry_s))
    return props
