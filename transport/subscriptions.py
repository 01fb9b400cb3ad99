"""The topic filters of one MQTT connection: subscribed on every connect, refused ones again.

A broker may refuse a subscription (SUBACK failure): an ACL, or a cluster that lost a node and
refuses subscriptions while it elects new leaders (NATS does, for seconds). A device that
silently stays without its round or label subscription would miss everything until its next
reconnect, so refused filters are subscribed again after a backoff (doubling from the
reconnect minimum to its maximum), from a timer thread, for as long as that session lasts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from transport.acks import AckRegistry
from transport.settings import MqttSettings, subscription_filter

_LOGGER = logging.getLogger(__name__)

FilterSource = Sequence[str] | Callable[[], Sequence[str]]


class Subscriptions:
    """Filters, SUBSCRIBE/SUBACK bookkeeping and retries of one connection.

    Parameters
    ----------
    filters : sequence of str, or callable returning them
        Subscribed on every connect; a callable is asked at each connect (on the network thread).
    settings : MqttSettings
        QoS of the subscriptions and the backoff (``reconnect_min_s``..``reconnect_max_s``).
    current : callable
        ``current(client, session)``: True while that client's session is still the live,
        connected one (a retry for an older session is dropped: the new session subscribed
        everything).
    """

    def __init__(
        self,
        filters: FilterSource,
        settings: MqttSettings,
        current: Callable[[mqtt.Client, int], bool],
    ) -> None:
        self._static = [] if callable(filters) else list(filters)
        self._dynamic = filters if callable(filters) else None
        self._settings = settings
        self._current = current
        self._subacks: AckRegistry[list[bool]] = AckRegistry()  # refused, per filter
        self._backoff_s = 0.0
        self.refused: list[str] = []  # filters refused by the latest SUBACK

    def add(self, topic_filters: Sequence[str]) -> None:
        """More filters for every connect."""
        self._static += list(topic_filters)

    def filters(self, mqtt5: bool) -> list[str]:
        """The filters to subscribe on a connect now, as this protocol spells them."""
        dynamic = self._dynamic() if self._dynamic is not None else ()
        return [subscription_filter(f, mqtt5) for f in (*self._static, *dynamic)]

    def subscribe(
        self,
        client: mqtt.Client,
        session: int,
        filters: list[str],
        then: Callable[[], None] | None = None,
    ) -> None:
        """SUBSCRIBE ``filters`` now; ``then`` runs after the SUBACK (on the network thread)."""
        self._subacks.begin()
        rc, mid = client.subscribe([(f, self._settings.subscribe_qos) for f in filters])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            _LOGGER.warning("subscribe %s failed: %s", filters, mqtt.error_string(rc))
        self._subacks.register(
            mid if rc == mqtt.MQTT_ERR_SUCCESS else None,
            lambda refused: self._answered(client, session, filters, refused, then),
        )

    def on_suback(self, mid: int, reason_codes: list[ReasonCode]) -> None:
        """paho's SUBACK (network thread)."""
        self._subacks.resolve(mid, [rc.is_failure for rc in reason_codes])

    def _answered(
        self,
        client: mqtt.Client,
        session: int,
        filters: list[str],
        refused: list[bool],
        then: Callable[[], None] | None,
    ) -> None:
        self.refused = [f for f, bad in zip(filters, refused, strict=False) if bad]
        if then is not None:
            then()  # the connect's own SUBACK: the session is up (refused or not)
        if not self.refused:
            self._backoff_s = 0.0
        elif self._current(client, session):
            s = self._settings
            delay = min(max(2 * self._backoff_s, s.reconnect_min_s), s.reconnect_max_s)
            self._backoff_s = delay
            _LOGGER.warning("broker refused subscription(s) %s: again in %g s", self.refused, delay)
            retry = threading.Timer(delay, self._again, args=(client, session, self.refused))
            retry.daemon = True
            retry.start()

    def _again(self, client: mqtt.Client, session: int, filters: list[str]) -> None:
        if self._current(client, session):
            self.subscribe(client, session, filters)

    def reset(self) -> None:
        """A new session: its subscriptions start a fresh backoff."""
        self._backoff_s = 0.0
