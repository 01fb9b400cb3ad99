"""The small interfaces the agent is wired through (sources, uplink, buffer, clock, labels).

The agent depends only on these Protocols; ``uplink.MqttUplink``, ``buffer.SqliteBuffer``,
``firmware_bridge.sources`` and ``inference.OnnxBeatClassifier`` are the real adapters, and the
tests plug in fakes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from common.types import SignalChunk


class ChunkSource(Protocol):
    """Anything yielding signal chunks (``firmware_bridge.sources`` sources are entered first)."""

    def chunks(self) -> AsyncIterator[SignalChunk]:
        """Chunks in stream order until the source ends."""
        ...


AckCallback = Callable[[bool], None]


class Uplink(Protocol):
    """The network side (MQTT): reliable pred, best-effort live, retained status, inbound labels."""

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        ...

    def publish_reliable(self, topic: str, payload: bytes, on_ack: AckCallback) -> bool:
        """Hand a QoS 1 message over; ``on_ack(ok)`` runs on the event loop once the broker
        acknowledged it (ok=True) or refused it (ok=False). Returns False, without keeping the
        message, when not connected."""
        ...

    def publish_live(self, topic: str, payload: bytes) -> None:
        """Best-effort QoS 0 message, dropped when not connected."""
        ...

    def publish_status(self, online: bool, detail: str) -> None:
        """Retained QoS 1 status (heartbeat with the device's current state); dropped when
        not connected (the Will covers that case)."""
        ...

    def inbound(self) -> AsyncIterator[tuple[str, bytes]]:
        """Messages from the subscribed topics (labels), as (topic, payload)."""
        ...


class Participant(Protocol):
    """A federated-learning participant plugged into the agent (FEDERATED's
    ``edge_agent.federated``).

    The agent subscribes to ``subscriptions()`` on its MQTT connection and hands every message
    on those topics to ``handle`` (in its own task, so training never blocks the signal path;
    CPU-heavy work should go to a thread). The participant publishes its updates through the
    same ``Uplink`` and reads training data from the agent's ``LabelledExampleSource``, both
    given to it at construction by the wiring code.
    """

    def subscriptions(self) -> list[str]:
        """Topic filters the participant needs (e.g. the current-round and model topics)."""
        ...

    async def handle(self, topic: str, payload: bytes) -> None:
        """One message on a subscribed topic; must not raise on malformed payloads."""
        ...


class Clock(Protocol):
    """Wall-clock time in ns since the Unix epoch."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()
