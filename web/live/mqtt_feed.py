"""The web app's live feed over the shared MQTT adapter: subscribe live/pred/status, publish labels.

:class:`~transport.mqtt.MqttConnection` does the MQTT work (a clean session with a random
client id; protocol 5 or 3.1.1, TLS and credentials from the URL; reconnects, re-subscribes,
and counts as connected only once subscribed). Its callbacks only enqueue; one worker thread
drains the queue into the hub (see ``dispatch``), so decoding never runs on paho's network
thread and a burst cannot block it. After each (re)connect the ``on_connected`` hook runs on
the worker, and ``on_tick`` every ``tick_s`` (the app re-delivers unacknowledged labels from
both).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from common.payloads import Label, encode_label
from common.protocol import Channel, client_topic
from transport.inbox import Message, QueueInbox
from transport.mqtt import MqttConnection
from transport.settings import mqtt_settings, random_client_id
from web.live.dispatch import FeedSink, dispatch, subscriptions

_LOGGER = logging.getLogger(__name__)

_RECONNECTED = "reconnected"  # in the inbox: run the on_connected hook
_STOP = "stop"  # in the inbox: wake the worker to end


class MqttLiveFeed:
    """Live feed from a real broker (``connection``: the :class:`~transport.mqtt.MqttConnection`).

    Parameters
    ----------
    broker_url : str
        ``mqtt[s]://...`` (:func:`transport.settings.mqtt_settings`).
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
        settings = mqtt_settings(broker_url, random_client_id("medchain-web"), ca_file=ca_file)
        self.host, self.port = settings.address.host, settings.address.port
        self.sinks = list(sinks)
        self.label_qos = label_qos
        self.counters: Counter[str] = Counter()
        self.on_connected: Callable[[], None] | None = None
        self.on_tick: Callable[[], None] | None = None
        self.tick_s = 10.0
        self._inbox: QueueInbox[Message | str] = QueueInbox(inbox_size, "web live feed")
        self.connection = MqttConnection(
            settings,
            subscriptions(),
            on_message=self._inbox.put,
            on_connected=lambda: self._inbox.put(_RECONNECTED),
        )
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._drain, name="web-live-feed", daemon=True)

    @property
    def connected(self) -> bool:
        """True while the broker connection is up and subscribed."""
        return self.connection.connected

    @property
    def dropped(self) -> int:
        """Messages dropped because the worker fell behind (inbox full)."""
        return self._inbox.dropped

    def start(self) -> None:
        """Connect in the background (retrying) and start the worker."""
        self._worker.start()
        self.connection.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` s passed."""
        return self.connection.wait_connected(timeout)

    def stop(self) -> None:
        """Disconnect and stop the worker."""
        self.connection.stop()
        self._stopping.set()
        if self._worker.is_alive():
            self._inbox.put(_STOP)  # wakes the worker (if the inbox is full, the next item does)
            self._worker.join(5)

    def publish_label(self, label: Label, timeout: float = 5.0) -> bool:
        """Publish a label on ``medchain/v1/label/{client_id}``; True once the broker has it."""
        if not self.connected:
            return False
        topic = client_topic(Channel.LABEL, label.client_id)
        if self.connection.publish_wait(
            topic, encode_label(label), qos=self.label_qos, timeout_s=timeout
        ):
            return True
        _LOGGER.warning("label %s not confirmed by the broker within %g s", label.label_id, timeout)
        return False

    @staticmethod
    def _run_hook(hook: Callable[[], None] | None, name: str) -> None:
        if hook is None:
            return
        try:
            hook()
        except Exception:  # keep the feed alive whatever the hook does (store down...)
            _LOGGER.exception("%s hook failed", name)

    def _drain(self) -> None:
        next_tick = time.monotonic() + self.tick_s
        while True:
            item = self._inbox.get(next_tick - time.monotonic())
            if self._stopping.is_set():
                return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                self._run_hook(self.on_tick, "on_tick")
            if item is None:
                continue
            if item == _RECONNECTED:
                self._run_hook(self.on_connected, "on_connected")
                continue
            if isinstance(item, Message):
                try:
                    dispatch(self.sinks, item.topic, item.payload, self.counters)
                except Exception:  # a hub bug must not kill the only worker
                    self.counters["errors"] += 1
                    _LOGGER.exception("live feed failed on a message of %s", item.topic)
