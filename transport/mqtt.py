"""The one paho-mqtt 2.x adapter of MedChain: device, aggregator, web feed, fleet and tools.

- ``CallbackAPIVersion.VERSION2``; MQTT 5, or 3.1.1 when forced or when the broker answers the
  MQTT 5 CONNECT with "unsupported protocol version" (a 3.1.1 broker must answer so, MQTT
  3.1.1 section 3.1.2.2; the NATS MQTT listener does, and amqtt for a CONNECT without
  properties) or, before the first session, does not answer it within
  ``protocol_probe_s`` (amqtt, given a session expiry). The switch happens once, on a fresh
  client, off the network thread. Shared subscriptions and message expiry are MQTT 5 only.
- TLS, credentials, clean or persistent session, Will and backoff from
  :class:`~transport.settings.MqttSettings` (:mod:`transport.paho_client` builds the client).
- Reconnects in the background with exponential backoff (paho's); subscriptions are made in
  ``on_connect`` so every reconnect re-subscribes, and the connection counts as up only once
  the broker answered them (SUBACK): a message sent between CONNACK and SUBACK would be lost;
  refused ones are made again with backoff (:mod:`transport.subscriptions`).
- Last Will on the status topic; a retained online status after every (re)connect, a retained
  offline one on a clean stop. Each CONNECT starts a new status session (its Will is set
  again just before it) so that the aggregator can order a device's statuses however a
  clustered broker delivers them (:func:`common.payloads.supersedes`).
- Callbacks only enqueue: inbound messages go to the ``on_message`` sink (a
  :mod:`transport.inbox`), acknowledgements to per-message callbacks (:mod:`transport.acks`).
- Every wait is bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from common.errors import ConfigError
from transport.acks import AckCallback, AckRegistry
from transport.inbox import Message
from transport.paho_client import (
    connect_in_background,
    expiry_properties,
    new_client,
    tls_context,
)
from transport.settings import (
    BrokerUnavailableError,
    MqttProtocol,
    MqttSettings,
    subscription_filter,
)
from transport.status_session import StatusBuilder, StatusSessions
from transport.subscriptions import FilterSource, Subscriptions

_LOGGER = logging.getLogger(__name__)

UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason code (3.1.1's return code 1 maps to it)
BAD_CREDENTIALS = frozenset({0x86, 0x87})  # bad user name or password, not authorised


class MqttConnection:
    """A supervised MQTT connection (paho's network thread plus these callbacks).

    Parameters
    ----------
    settings : MqttSettings
        Where and how to connect (:func:`transport.settings.mqtt_settings`).
    subscriptions : sequence of str, or callable returning them
        Topic filters subscribed on every connect; a callable is asked at each connect (a
        participant whose filters change), on the network thread.
    on_message : callable, optional
        Receives every inbound :class:`~transport.inbox.Message` on the network thread; must
        only enqueue (``QueueInbox.put``, ``LoopInbox.put``).
    on_connected : callable, optional
        Runs on the network thread after every (re)connect once subscribed; must only enqueue.
    status : callable, optional
        ``status(online, detail, session, seq) -> payload`` of the retained status on the
        Will's topic, stamped by :class:`~transport.status_session.StatusSessions`: online
        after every connect, offline as each connection's Will, and whatever
        :meth:`publish_status` and :meth:`stop` say.
    """

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: FilterSource = (),
        *,
        on_message: Callable[[Message], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        status: StatusBuilder | None = None,
    ) -> None:
        if status is not None and settings.will is None:
            raise ConfigError("a status needs a Will (its topic)")
        if status is None and settings.will is not None and not settings.will.payload:
            raise ConfigError("a Will needs a payload, or a status builder to make one")
        self.settings = settings
        self._subs = Subscriptions(subscriptions, settings, self._is_session)
        self.on_message = on_message
        self.on_connected = on_connected
        self._statuses = StatusSessions(status) if status is not None else None
        self.protocol = (
            MqttProtocol.V311 if settings.protocol is MqttProtocol.V311 else MqttProtocol.V5
        )
        self.connects = 0
        self.refused: ReasonCode | None = None  # the broker's last CONNACK refusal
        self._tls = tls_context(settings) if settings.address.tls else None
        self._acks: AckRegistry[bool] = AckRegistry()  # PUBACK: True, or False (refused)
        self._ready = threading.Event()
        self._life = threading.Lock()
        self._started = self._stopped = False
        self._connacks = 0  # CONNACKs of the current client (the no-answer probe)
        self._settled = settings.protocol is not MqttProtocol.AUTO  # protocol known to work
        self._client = self._make_client()

    # ------------------------------------------------------------------ lifecycle
    def _make_client(self) -> mqtt.Client:
        c = new_client(self.settings, self.mqtt5, self._tls)
        c.on_connect = self._on_connect
        c.on_socket_open = self._on_socket_open
        c.on_pre_connect = self._on_pre_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def add_subscriptions(self, topic_filters: Sequence[str]) -> None:
        """More filters to subscribe on every connect (before :meth:`start`)."""
        self._subs.add(topic_filters)

    @property
    def refused_filters(self) -> list[str]:
        """Filters the broker refused in its latest SUBACK (subscribed again with backoff)."""
        return self._subs.refused

    def _is_session(self, client: mqtt.Client, session: int) -> bool:
        """True while ``client``'s session number ``session`` is the live, connected one."""
        return client is self._client and session == self._connacks and self.connected

    def start(self) -> None:
        """Connect in the background, retrying with backoff until :meth:`stop` (returns at once)."""
        with self._life:
            if self._started or self._stopped:
                return
            self._started = True
            self._open()

    def _open(self) -> None:
        connect_in_background(self._client, self.settings, self.mqtt5)

    def _fall_back_to_311(self, refused_client: mqtt.Client, why: str) -> None:
        """Runs on its own short thread: a fresh 3.1.1 client replaces the refused MQTT 5 one,
        which is stopped afterwards (its network thread may sleep up to 1 s before it ends)."""
        with self._life:
            if self._stopped or refused_client is not self._client or not self.mqtt5:
                return
            a = self.settings.address
            _LOGGER.warning("%s:%d: %s: using MQTT 3.1.1", a.host, a.port, why)
            self.protocol = MqttProtocol.V311
            self._client = self._make_client()
            self._open()
        refused_client.disconnect()
        refused_client.loop_stop()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed, at most ``timeout_s`` s; True if so."""
        return self._ready.wait(timeout_s)

    def connect(self, timeout_s: float) -> None:
        """:meth:`start` and wait for the session; on failure stop and raise.

        Raises
        ------
        BrokerUnavailableError
            If no session within ``timeout_s`` s, or at once when the broker refuses the
            credentials.
        """
        self.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            bad_login = self.refused is not None and self.refused.value in BAD_CREDENTIALS
            if bad_login or time.monotonic() >= deadline:
                self.stop()
                a = self.settings.address
                why = f" ({self.refused})" if self.refused is not None else ""
                raise BrokerUnavailableError(
                    f"cannot connect to {a.host}:{a.port} within {timeout_s:g} s{why}"
                )

    def stop(self, offline_detail: str | None = None, timeout_s: float = 2.0) -> None:
        """Publish an offline status saying ``offline_detail`` (retained, on the Will's topic)
        if connected, waiting at most ``timeout_s`` s, then disconnect and stop the network
        thread (idempotent)."""
        with self._life:
            if self._stopped:
                return
            self._stopped = True
        will = self.settings.will
        statuses = self._statuses
        if (
            offline_detail is not None
            and will is not None
            and statuses is not None
            and self.connected
        ):
            payload = statuses.next(False, offline_detail)
            if not self.publish_wait(will.topic, payload, retain=True, timeout_s=timeout_s):
                _LOGGER.warning("offline status not confirmed within %g s", timeout_s)
        self._ready.clear()  # before the DISCONNECT: its callback is not a lost connection
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._ready.is_set()

    @property
    def mqtt5(self) -> bool:
        """True when speaking MQTT 5 (false after a fallback to 3.1.1)."""
        return self.protocol is MqttProtocol.V5

    # ------------------------------------------------------------------ I/O
    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
        on_ack: AckCallback | None = None,
    ) -> bool:
        """Hand a message to the client; False if it refused it locally (logged).

        Parameters
        ----------
        expiry_s : float, optional
            MQTT 5 message expiry, s (ignored on 3.1.1).
        on_ack : callable, optional
            Called once with True when the broker acknowledged it (QoS 0: when sent), False
            when it refused it; on the network thread, so it must only enqueue. A QoS 1
            message handed over while disconnected is sent after the reconnect.
        """
        props = expiry_properties(expiry_s) if expiry_s is not None and self.mqtt5 else None
        if on_ack is not None:
            self._acks.begin()
        mid: int | None = None
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                mid = info.mid
            else:
                _LOGGER.warning("publish to %s refused: %s", topic, mqtt.error_string(info.rc))
        except ValueError as exc:  # invalid topic, payload over 256 MiB
            _LOGGER.warning("publish to %s refused: %s", topic, exc)
        if on_ack is not None:
            self._acks.register(mid, on_ack)
        return mid is not None

    def publish_wait(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
        timeout_s: float = 10.0,
    ) -> bool:
        """Publish and wait at most ``timeout_s`` s for the broker; True once it accepted it.

        False does not mean lost: a QoS 1 message not yet acknowledged is re-sent after a
        reconnect.
        """
        done = threading.Event()
        result: list[bool] = []

        def acked(ok: bool) -> None:
            result.append(ok)
            done.set()

        if not self.publish(
            topic, payload, qos=qos, retain=retain, expiry_s=expiry_s, on_ack=acked
        ):
            return False
        return done.wait(timeout_s) and result[0]

    def publish_status(self, online: bool, detail: str = "") -> bool:
        """Retained QoS 1 status on the Will's topic, only while connected."""
        will = self.settings.will
        if will is None or self._statuses is None or not self.connected:
            return False
        payload = self._statuses.next(online, detail)
        return self.publish(will.topic, payload, qos=will.qos, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, _u: object) -> None:
        """A new status session, and its Will, before each CONNECT (paho's network thread)."""
        will = self.settings.will
        if client is not self._client or will is None or self._statuses is None:
            return
        payload = self._statuses.start()
        client.will_set(will.topic, payload, qos=will.qos, retain=will.retain)

    def subscribe(self, topic_filter: str) -> bool:
        """Subscribe once more now (the broker re-sends its retained messages; retried if
        refused); not remembered for reconnects. False when not connected."""
        if not self.connected:
            return False
        flt = subscription_filter(topic_filter, self.mqtt5)
        self._subs.subscribe(self._client, self._connacks, [flt])
        return True

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge an inbound QoS 1/2 message once handled (``manual_ack`` only)."""
        if self.settings.manual_ack and qos > 0:
            self._client.ack(mid, qos)

    # ---------------------------------------------- callbacks (network thread: they only enqueue)
    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _p: object,
    ) -> None:
        if client is not self._client:
            return  # a late callback of a client already replaced
        self._connacks += 1
        if reason_code.is_failure:
            self.refused = reason_code
            if (
                reason_code.value == UNSUPPORTED_PROTOCOL
                and self.mqtt5
                and self.settings.protocol is MqttProtocol.AUTO
            ):
                # loop_stop cannot run on the thread it stops: hand the switch to a thread
                why = f"the broker answered an MQTT 5 CONNECT with {reason_code}"
                threading.Thread(
                    target=self._fall_back_to_311, args=(client, why), daemon=True
                ).start()
            else:
                _LOGGER.warning("broker refused the connection: %s (retrying)", reason_code)
            return
        self.refused = None
        self._settled = True
        self._subs.reset()
        filters = self._subs.filters(self.mqtt5)
        _LOGGER.info(
            "connected to %s:%d as %s (MQTT %s, session present: %s)",
            self.settings.address.host,
            self.settings.address.port,
            self.settings.client_id,
            self.protocol.value,
            flags.session_present,
        )
        if filters:  # up once the broker answered (SUBACK)
            self._subs.subscribe(client, self._connacks, filters, lambda: self._up(client))
        else:
            self._up(client)

    def _on_socket_open(self, client: mqtt.Client, _u: object, _sock: object) -> None:
        if client is self._client and not self._settled and self.mqtt5:
            # a broker that neither answers nor refuses an MQTT 5 CONNECT: probe it, off-thread
            probe = threading.Timer(
                self.settings.protocol_probe_s, self._probe, args=(client, self._connacks)
            )
            probe.daemon = True
            probe.start()

    def _probe(self, client: mqtt.Client, connacks: int) -> None:
        if client is self._client and not self._settled and self._connacks == connacks:
            wait = self.settings.protocol_probe_s
            self._fall_back_to_311(client, f"no answer to an MQTT 5 CONNECT within {wait:g} s")

    def _on_subscribe(
        self, client: mqtt.Client, _u: object, mid: int, reason_codes: list[ReasonCode], _p: object
    ) -> None:
        if client is self._client:
            self._subs.on_suback(mid, reason_codes)

    def _up(self, client: mqtt.Client) -> None:
        self.connects += 1
        will = self.settings.will
        if self._statuses is not None and will is not None:
            client.publish(will.topic, self._statuses.next(True), qos=will.qos, retain=True)
        self._ready.set()
        if self.on_connected is not None:
            self.on_connected()

    def _on_disconnect(
        self, client: mqtt.Client, _u: object, _f: object, reason_code: ReasonCode, _p: object
    ) -> None:
        if client is not self._client:
            return
        if self._ready.is_set():
            _LOGGER.warning("disconnected from the broker: %s (reconnecting)", reason_code)
        self._ready.clear()

    def _on_publish(
        self, client: mqtt.Client, _u: object, mid: int, reason_code: ReasonCode, _p: object
    ) -> None:
        if client is self._client:
            self._acks.resolve(mid, not reason_code.is_failure)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self.on_message is None or client is not self._client:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers check UTF-8 topics; never crash the thread
            _LOGGER.warning("message with an undecodable topic dropped (%d B)", len(msg.payload))
            self.ack(msg.mid, msg.qos)
            return
        self.on_message(Message(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain)))
