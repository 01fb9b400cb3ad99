"""Where each inbound message of the edge agent goes.

The store's receipts go to the outbox, spot-check requests to the spot checker, clinician
labels to the buffer and everything else (round announcements, model releases) to the
federated participant, in a task of its own. Inbound MQTT messages are untrusted: whatever a
handler raises is caught per message, counted in ``bad_payloads`` and logged on one line naming
the topic and the size (:func:`edge_agent.inbound.reject_line`), then the next one is handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from common.protocol import Channel, ProtocolError, parse_topic
from edge_agent.agent_ports import AgentStats, SpotChecker
from edge_agent.buffer import SqliteBuffer
from edge_agent.clinician_labels import checked_label, store_label
from edge_agent.inbound import reject_line
from edge_agent.outbox import OutboxPump
from edge_agent.ports import Participant

_LOGGER = logging.getLogger(__name__)


class HasClasses(Protocol):
    """What the router needs of the beat pipeline."""

    @property
    def classes(self) -> Sequence[str]: ...


class InboundRouter:
    """Routes one device's inbound messages (module docstring).

    Parameters
    ----------
    client_id : str
        The device; labels naming another are refused.
    model : HasClasses
        The beat pipeline; a label must name one of its current ``classes`` (a swapped model
        may have others).
    buffer : SqliteBuffer
        Where clinician labels are stored.
    outbox : OutboxPump
        Takes the store's receipts.
    stats : AgentStats
        ``bad_payloads`` and the label counters.
    spot, participant : optional
        Spot checks on ``control/{client_id}``; the federated participant (the app sets it
        after building the agent).
    """

    def __init__(
        self,
        client_id: str,
        model: HasClasses,
        buffer: SqliteBuffer,
        outbox: OutboxPump,
        stats: AgentStats,
        spot: SpotChecker | None = None,
        participant: Participant | None = None,
    ) -> None:
        self.client_id, self.model = client_id, model
        self.buffer, self.outbox, self.stats = buffer, outbox, stats
        self.spot, self.participant = spot, participant
        self.tasks: set[asyncio.Task[None]] = set()  # participant handlers still running

    def handle(self, topic: str, payload: bytes) -> None:
        """Handle one message (never raises: a failure is one reject, counted and logged)."""
        try:
            t = parse_topic(topic)
            if t.channel == Channel.PRED_ACK:
                self.outbox.on_receipt(payload)
                return
            if t.channel == Channel.CONTROL and self.spot is not None:
                self.spot.request(payload)
                return
            if t.channel != Channel.LABEL and self.participant is not None:
                task = asyncio.get_running_loop().create_task(
                    self._to_participant(self.participant, topic, payload)
                )
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
            label = checked_label(t, topic, payload, self.client_id, self.model.classes)
            store_label(label, self.buffer, self.stats)
        except Exception as exc:  # untrusted input: anything a handler raises is one reject
            self._rejected(topic, payload, exc)

    async def settled(self) -> None:
        """Wait until every message handed to the participant has been handled."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    async def _to_participant(self, participant: Participant, topic: str, payload: bytes) -> None:
        try:
            await participant.handle(topic, payload)
        except Exception as exc:  # the participant must not raise; if it does, one reject
            self._rejected(topic, payload, exc)

    def _rejected(self, topic: str, payload: bytes, exc: Exception) -> None:
        self.stats.bad_payloads += 1
        level = logging.WARNING if isinstance(exc, ProtocolError) else logging.ERROR
        _LOGGER.log(level, "%s", reject_line(topic, len(payload), exc))
