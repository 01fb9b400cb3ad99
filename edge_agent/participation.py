"""Adapter: FEDERATED's transport-free ``FederatedParticipant`` as the agent's ``Participant``.

Round and model messages reach the participant on the event loop (``on_message``); its
blocking ``poll`` (embedding + head training) runs in a worker thread, and the update messages
it returns go out through the agent's uplink with QoS 1. After a round the personal head it
saved is loaded into the running classifier, so the device's own predictions use it at once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from common.errors import MedchainError
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.ports import Uplink
from edge_agent.trainer import load_personal_head

_LOGGER = logging.getLogger(__name__)


class RoundParticipant(Protocol):
    """What ``edge_agent.federated.FederatedParticipant`` offers."""

    def subscriptions(self) -> list[str]: ...

    def on_message(self, topic: str, payload: bytes) -> None: ...

    def poll(self) -> list[tuple[str, bytes]]: ...


class FederatedBridge:
    """Implements ``edge_agent.ports.Participant`` around a round participant.

    Parameters
    ----------
    participant : RoundParticipant
    uplink : Uplink
        Where updates are published (QoS 1).
    classifier : OnnxBeatClassifier
        Receives the personal head after each round.
    workdir : Path
        The participant's folder (``personal_head.npz``).
    """

    def __init__(
        self,
        participant: RoundParticipant,
        uplink: Uplink,
        classifier: OnnxBeatClassifier,
        workdir: Path,
    ) -> None:
        self._p = participant
        self._uplink = uplink
        self._clf = classifier
        self._workdir = workdir
        self._busy = asyncio.Lock()
        self.published = 0
        self.unsent = 0
        self._load_head()

    def subscriptions(self) -> list[str]:
        """Round and model topics."""
        return self._p.subscriptions()

    async def handle(self, topic: str, payload: bytes) -> None:
        """Feed one message; train and publish when a round becomes ready."""
        self._p.on_message(topic, payload)
        async with self._busy:  # one training at a time
            out = await asyncio.to_thread(self._p.poll)
        for t, part in out:
            if self._uplink.publish_reliable(t, part, self._acked):
                self.published += 1
            else:
                self.unsent += 1
                _LOGGER.warning("update part for %s not sent: broker unreachable", t)
        if out:
            self._load_head()

    def _acked(self, ok: bool) -> None:
        if not ok:
            _LOGGER.warning("broker refused an update part")

    def _load_head(self) -> None:
        head = load_personal_head(self._workdir)
        if head is None:
            return
        try:
            self._clf.set_head(head.weight, head.bias, f"personal-{head.base_version}")
        except MedchainError as exc:
            _LOGGER.warning("personal head not used: %s", exc)
        else:
            _LOGGER.info(
                "personal head from %s (%d beats) in use", head.base_version, head.n_examples
            )
