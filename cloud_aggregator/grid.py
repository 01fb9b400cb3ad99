"""The engine's only port to the devices: publish to them, receive from them, acknowledge.

Production is MQTT (:class:`cloud_aggregator.mqtt_io.PahoBroker`: QoS 1, retained
announcements and models, manual acknowledgement after the store has a message); tests,
benches and simulations of thousands of clients use
:class:`cloud_aggregator.grid_memory.InMemoryGrid`, the same engine in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Inbound:
    """One message from a device (``mid`` for the acknowledgement after it is handled)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


class Grid(Protocol):
    """Publish / receive / acknowledge, as the round engine and the service need it."""

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
        """Publish (QoS 1); True once the transport confirmed it within ``timeout_s`` s.

        ``expiry_s`` (s) is the MQTT 5 message expiry of a retained announcement.
        """
        ...

    def get(self, timeout_s: float) -> Inbound | None:
        """The next message from a device, or None after ``timeout_s`` s."""
        ...

    def ack(self, msg: Inbound) -> None:
        """The message is handled (stored or refused): the transport may forget it."""
        ...
