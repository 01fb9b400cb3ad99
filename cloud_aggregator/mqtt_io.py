"""paho-mqtt 2.x adapter of the aggregator (thread-based, every wait bounded).

- ``CallbackAPIVersion.VERSION2``; MQTT 5 first, falling back to 3.1.1 when the broker refuses
  it (amqtt, old brokers). Message expiry and shared subscriptions are used only on MQTT 5.
- Subscriptions are made in ``on_connect`` so a reconnect (broker restart) re-subscribes; a
  ``on_reconnect`` hook lets the service re-publish its retained state (a restarted broker
  without persistence has forgotten it).
- Callbacks only enqueue. Inbound QoS 1 messages are acknowledged *after* the service stored
  them (``manual_ack``), and the session is persistent (fixed client id, ``clean_start=False``)
  so a killed aggregator gets the unacknowledged updates again after a restart.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_aggregator.grid import Inbound
from common.broker_url import BrokerAddress
from common.errors import MedchainError

_LOGGER = logging.getLogger(__name__)
SESSION_EXPIRY_S = 3600
MAX_QUEUE = 100_000


class BrokerUnavailableError(MedchainError):
    """The broker could not be reached within the timeout."""


class PahoBroker:
    """A connected paho client with an inbound queue: the MQTT :class:`~cloud_aggregator.grid.Grid`.

    Parameters
    ----------
    url : str
        Broker URL.
    client_id : str
        Fixed MQTT client id (persistent session).
    subscriptions : sequence of str
        Topic filters (``$share/...`` ones are used only on MQTT 5; on 3.1.1 the prefix is
        removed).
    ca_file : str, optional
        CA bundle for ``mqtts://``.
    on_reconnect : callable, optional
        Called on the network thread after every successful (re)connect; must only enqueue.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: Sequence[str] = (),
        *,
        ca_file: str | None = None,
        on_reconnect: Callable[[], None] | None = None,
        clean_start: bool = False,
        manual_ack: bool = True,
    ) -> None:
        self.address = BrokerAddress.parse(url)
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.ca_file = ca_file
        self.on_reconnect = on_reconnect
        self.clean_start = clean_start
        self.manual_ack = manual_ack
        self.inbound: queue.Queue[Inbound] = queue.Queue(MAX_QUEUE)
        self.protocol = mqtt.MQTTv5
        self.connects = 0
        self.dropped = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = self._make_client()

    # ------------------------------------------------------------------ lifecycle
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            clean_session=None if self.protocol == mqtt.MQTTv5 else self.clean_start,
            manual_ack=self.manual_ack,
        )
        if self.address.username:
            c.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            c.tls_set(ca_certs=self.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.max_queued_messages_set(10_000)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (MQTT 5, else 3.1.1) and start the network thread.

        Raises
        ------
        BrokerUnavailableError
            If no connection is made within ``timeout_s`` or the broker refuses credentials.
        """
        # Some MQTT 3.1.1-only brokers answer an MQTT 5 CONNECT with "unsupported protocol
        # version", others (amqtt) never answer it: both lead to a 3.1.1 attempt. Credentials
        # refused are final.
        if self._try_connect(min(timeout_s, 5.0)):
            return
        refused = (self._refused or "").lower()
        if "authori" not in refused and "password" not in refused:
            _LOGGER.warning(
                "no MQTT 5 session (%s): falling back to 3.1.1", self._refused or "no answer"
            )
            self.protocol = mqtt.MQTTv311
            self._client = self._make_client()
            if self._try_connect(timeout_s):
                return
        raise BrokerUnavailableError(
            f"cannot connect to {self.address.host}:{self.address.port} within {timeout_s} s"
            + (f" ({self._refused})" if self._refused else "")
        )

    def _try_connect(self, timeout_s: float) -> bool:
        self._refused = None
        props = None
        clean: Any = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0 if self.clean_start else SESSION_EXPIRY_S
            clean = self.clean_start
        try:
            self._client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=15,
                clean_start=clean,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            self._refused = str(exc)
            return False
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._connected.wait(0.05):
                return True
            if self._refused:
                break
        self._client.loop_stop()
        self._client.disconnect()
        return False

    def stop(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while connected."""
        return self._connected.is_set()

    @property
    def mqtt5(self) -> bool:
        """True on an MQTT 5 connection."""
        return self.protocol == mqtt.MQTTv5

    # ------------------------------------------------------------------ I/O
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
        timeout_s: float = 10.0,
    ) -> bool:
        """Publish and wait up to ``timeout_s`` s for the acknowledgement; False on timeout/error.

        ``expiry_s`` (s) sets the MQTT 5 message expiry interval.

        paho keeps an unacknowledged QoS 1 message and re-sends it after a reconnect, so a
        False return does not mean the message is lost — only that it is not confirmed yet.
        """
        props = None
        if expiry_s is not None and self.mqtt5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = max(1, int(expiry_s))
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            _LOGGER.warning("publish to %s failed: rc=%s", topic, info.rc)
            return False
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def get(self, timeout_s: float) -> Inbound | None:
        """Next inbound message, or None after ``timeout_s``."""
        try:
            return self.inbound.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def ack(self, msg: Inbound) -> None:
        """Acknowledge a QoS 1 message once it is safely handled (no-op for QoS 0)."""
        if self.manual_ack and msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    # ------------------------------------------------------------------ callbacks (enqueue only)
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: object,
        properties: Properties | None,
    ) -> None:
        if client is not self._client:
            return  # a late callback of the MQTT 5 attempt we gave up on
        if getattr(reason_code, "is_failure", False):
            self._refused = str(reason_code)
            _LOGGER.warning("broker refused the connection: %s", reason_code)
            return
        for flt in self.subscriptions:
            if flt.startswith("$share/") and not self.mqtt5:
                flt = flt.split("/", 2)[2]
            client.subscribe(flt, qos=1)
        self.connects += 1
        self._connected.set()
        _LOGGER.info(
            "connected to %s:%d (%s), session present=%s",
            self.address.host,
            self.address.port,
            "MQTT 5" if self.mqtt5 else "MQTT 3.1.1",
            flags.session_present,
        )
        if self.on_reconnect is not None:
            self.on_reconnect()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: object,
        properties: Properties | None,
    ) -> None:
        if client is not self._client:
            return
        if self._connected.is_set():
            _LOGGER.warning("disconnected from the broker: %s (paho reconnects)", reason_code)
        elif not self._refused and getattr(reason_code, "is_failure", False):
            self._refused = str(reason_code)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self.inbound.put_nowait(
                Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))
            )
        except queue.Full:
            # Not acknowledged: the broker redelivers it after the next reconnect.
            self.dropped += 1
