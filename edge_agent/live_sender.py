"""The live signal for the web page: decimated ECG batches published best-effort, rate-limited.

:class:`~edge_agent.live.LiveDecimator` makes the batches; :class:`LiveSender` publishes them
(QoS 0, dropped when offline) through a token bucket on wall time, so a replay at
``--speed max`` cannot flood the broker with a plot nobody can watch.
"""

from __future__ import annotations

from common.payloads import encode_chunk
from common.protocol import Channel, client_topic
from common.types import SignalChunk
from edge_agent.agent_ports import AgentStats
from edge_agent.config import EdgeSettings
from edge_agent.live import LiveDecimator
from edge_agent.ports import Clock, Uplink

__all__ = ["LiveSender"]


class LiveSender:
    """ECG chunks -> throttled ``live/{client_id}`` messages.

    Parameters
    ----------
    settings : EdgeSettings
        ``client_id``, ``live_fs`` (Hz) and ``live_batch_s`` (s per message).
    uplink : Uplink, optional
        MQTT connection; None sends nothing (and decimates nothing).
    clock : Clock
        Wall clock of the token bucket.
    stats : AgentStats
        Gets ``live_payloads`` incremented.
    """

    def __init__(
        self, settings: EdgeSettings, uplink: Uplink | None, clock: Clock, stats: AgentStats
    ) -> None:
        self.settings = settings
        self.uplink = uplink
        self.clock = clock
        self.stats = stats
        self._cid = settings.client_id
        self._live_topic = client_topic(Channel.LIVE, self._cid)
        self._live = LiveDecimator(settings.live_fs, settings.live_batch_s)
        self._live_budget = 0.0
        self._live_t = 0.0

    def send(self, chunk: SignalChunk) -> None:
        """Decimate ``chunk`` and publish the batches the token bucket allows."""
        if self.uplink is None:
            return
        out = self._live.push(chunk)
        if not out or not self.uplink.connected:
            return
        # Token bucket on wall time: a replay at --speed max must not flood the broker with a
        # live plot nobody can watch; allow twice the real-time message rate.
        now = self.clock.now_ns() / 1e9
        rate = 2.0 / self.settings.live_batch_s
        self._live_budget = min(rate, self._live_budget + (now - self._live_t) * rate)
        self._live_t = now
        for c in out:
            if self._live_budget < 1.0:
                return
            self._live_budget -= 1.0
            self.uplink.publish_live(self._live_topic, encode_chunk("live", self._cid, c))
            self.stats.live_payloads += 1
