"""paho-mqtt adapter of the live feed: subscribe live/pred/status, publish labels.

paho callbacks only enqueue; one worker thread drains the queue into the hub (see
``dispatch``), so decoding never runs on paho's network thread and a burst cannot block it.
Subscriptions are made in ``on_connect`` so that a reconnect re-subscribes. After each
(re)connect the ``on_connected`` hook runs on the worker, and ``on_tick`` every ``tick_s``
(the app re-delivers unacknowledged labels from both).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.broker_url import parse_broker_url
from common.payloads import Label, encode_label
from common.protocol import Channel, client_topic
from web.live.dispatch import FeedSink, dispatch, subscriptions

_LOGGER = logging.getLogger(__name__)

_RECONNECTED = ("", b"")  # sentinel in the inbox: run the on_connected hook
_TICK = ("tick", b"")  # no message within the tick: run the on_tick hook


class MqttLiveFeed:
    """Live feed from a real broker.

    Parameters
    ----------
    broker_url : str
        ``mqtt://host:port``.
    sinks : sequence of FeedSink
        Receive decoded messages (the hub). The store is written by the aggregator's
        ingestion, whose session is durable, not by this ephemeral feed.
    label_qos : int
        QoS of label delivery (1: at least once; the device's consumer is idempotent).
    inbox_size : int
        Messages queued between paho and the worker before new ones are dropped (counted).
    ca_file : str, optional
        CA bundle for ``mqtts`` (the system's trust store when omitted).
    """

    def __init__(
        self,
        broker_url: str,
        sinks: Sequence[FeedSink],
        label_qos: int = 1,
        inbox_size: int = 10_000,
        ca_file: str | None = None,
    ) -> None:
        addr = parse_broker_url(broker_url)
        self.host, self.port = addr.host, addr.port
        self.sinks = list(sinks)
        self.label_qos = label_qos
        self.counters: Counter[str] = Counter()
        self.on_connected: Callable[[], None] | None = None
        self.on_tick: Callable[[], None] | None = None
        self.tick_s = 10.0
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=inbox_size)
        self._connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"medchain-web-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if addr.username is not None:
            self._client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._subscribe_mid: int | None = None
        self._client.reconnect_delay_set(1, 30)
        self._worker = threading.Thread(target=self._drain, name="web-live-feed", daemon=True)

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background (retrying) and start the worker."""
        self._worker.start()
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` s passed."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect and stop the worker."""
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
        if self._worker.is_alive():
            self._worker.join(5)

    def publish_label(self, label: Label, timeout: float = 5.0) -> bool:
        """Publish a label on ``medchain/v1/label/{client_id}``; True once the broker has it."""
        if not self.connected:
            return False
        info = self._client.publish(
            client_topic(Channel.LABEL, label.client_id), encode_label(label), qos=self.label_qos
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            _LOGGER.warning("label %s not published: rc=%s", label.label_id, info.rc)
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            _LOGGER.warning("label %s not published: %s", label.label_id, exc)
            return False
        return info.is_published()

    # paho callbacks: only enqueue / flag, never block.
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            _LOGGER.warning("broker %s:%d refused the connection: %s", self.host, self.port, rc)
            return
        # "Connected" means subscribed: a message published between CONNACK and SUBACK would be
        # lost, so readiness waits for the broker's SUBACK (``_on_subscribe``).
        rc_sub, mid = client.subscribe([(flt, 1) for flt in subscriptions()])
        if rc_sub != mqtt.MQTT_ERR_SUCCESS:
            _LOGGER.warning("subscribe to %s:%d failed: rc=%s", self.host, self.port, rc_sub)
            return
        self._subscribe_mid = mid

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any = None
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            _LOGGER.warning("broker refused %d subscription(s): %s", len(refused), refused)
        self._connected.set()
        self._enqueue(_RECONNECTED)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        self._connected.clear()
        _LOGGER.info("disconnected from broker %s:%d (%s)", self.host, self.port, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._enqueue((msg.topic, bytes(msg.payload)))

    @staticmethod
    def _run_hook(hook: Callable[[], None] | None, name: str) -> None:
        if hook is None:
            return
        try:
            hook()
        except Exception:  # keep the feed alive whatever the hook does (store down...)
            _LOGGER.exception("%s hook failed", name)

    def _enqueue(self, item: tuple[str, bytes]) -> None:
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.counters["dropped_inbox_full"] += 1

    def _drain(self) -> None:
        next_tick = time.monotonic() + self.tick_s
        while True:
            try:
                item = self._inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = _TICK
            if item is None:
                return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                self._run_hook(self.on_tick, "on_tick")
            if item is _TICK:
                continue
            if item is _RECONNECTED:
                self._run_hook(self.on_connected, "on_connected")
                continue
            try:
                dispatch(self.sinks, item[0], item[1], self.counters)
            except Exception:  # a hub bug must not kill the only worker
                self.counters["errors"] += 1
                _LOGGER.exception("live feed failed on a message of %s", item[0])
