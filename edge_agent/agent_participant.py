"""The edge agent's adapter of :class:`~edge_agent.federated_participant.FederatedParticipant`.

:class:`AgentParticipant` is the ``Participant`` port of the agent: it feeds round and model
messages to the transport-free participant, trains in a worker thread when a round is pending
and publishes the update through the agent's uplink. Re-exported by :mod:`edge_agent.federated`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from common import fl_protocol as fl
from common import protocol as proto
from edge_agent.agent_ports import AgentStats
from edge_agent.federated_participant import FederatedParticipant
from edge_agent.release_cache import ReleaseKey

_LOGGER = logging.getLogger(__name__)


class ReliablePublisher(Protocol):
    """The slice of the agent's uplink the participant uses (``edge_agent.ports.Uplink``)."""

    def publish_reliable(self, topic: str, payload: bytes, on_ack: Callable[[bool], None]) -> bool:
        """QoS 1 publish; False if it could not even be queued."""
        ...


class AgentParticipant:
    """Adapter of :class:`FederatedParticipant` to the edge agent's ``Participant`` port.

    ``handle`` feeds every round/model message to the participant; when a round is pending it
    trains in a worker thread (never on the signal path) and publishes the update through the
    agent's uplink, re-trying messages the uplink could not queue on the next call.
    ``on_release`` is told about every global model a round announcement (or a pin) names,
    once (to hot-swap inference); a release nobody announced is never handed to it. When an
    announced release is not here, an uplink that can ``resubscribe`` is asked once to
    subscribe its topics again (the broker then resends the retained release). ``stats``
    (``AgentStats``) counts rejected messages (``bad_payloads``) and releases dropped
    unannounced.
    """

    def __init__(
        self,
        participant: FederatedParticipant,
        uplink: ReliablePublisher,
        on_release: Callable[[fl.ModelRelease], None] | None = None,
        stats: AgentStats | None = None,
    ) -> None:
        self.participant = participant
        self.uplink = uplink
        self.on_release = on_release
        self.stats = stats
        self.acked = 0
        self.failed = 0
        self._outbox: list[tuple[str, bytes]] = []
        self._busy = asyncio.Lock()
        self._refetched: ReleaseKey | None = None

    def subscriptions(self) -> list[str]:
        """Round and model topics."""
        return self.participant.subscriptions()

    async def handle(self, topic: str, payload: bytes) -> None:
        """One inbound message (never raises on malformed input)."""
        own = self.participant.stats
        bad = own.bad_messages
        self.participant.on_message(topic, payload)
        for release in self.participant.releases.to_install():
            if self.on_release is not None:
                self.on_release(release)
        if self.stats is not None:  # one count of rejected inbound messages for the device
            self.stats.bad_payloads += own.bad_messages - bad
            self.stats.models_unannounced = own.releases_unannounced
        self._refetch()
        if self.participant.pending_round() is not None and not self._busy.locked():
            async with self._busy:
                self._outbox += await asyncio.to_thread(self.participant.poll)
        self._flush()

    def _refetch(self) -> None:
        missing = self.participant.releases.missing()
        resubscribe = getattr(self.uplink, "resubscribe", None)
        if missing is None or missing == self._refetched or resubscribe is None:
            return
        self._refetched = missing
        _LOGGER.info(
            "%s: announced release %s (sha256 %s) not here: asking the broker again",
            self.participant.client_id,
            missing[0],
            missing[1][:12],
        )
        resubscribe(f"{proto.model_topic(missing[0])}/#")

    def _flush(self) -> None:
        while self._outbox:
            topic, payload = self._outbox[0]
            if not self.uplink.publish_reliable(topic, payload, self._on_ack):
                return  # not connected: tried again on the next message
            self._outbox.pop(0)

    def _on_ack(self, ok: bool) -> None:
        if ok:
            self.acked += 1
        else:
            self.failed += 1
