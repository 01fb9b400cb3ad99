"""Personal head for the running classifier, around any federated ``Participant``.

FEDERATED's ``edge_agent.federated.AgentParticipant`` already adapts its round participant to
the agent's ``Participant`` port (training in a worker thread, updates through the agent's
uplink, retries while offline). ``PersonalisedParticipant`` wraps it and, whenever the
personal head file in ``workdir`` changes (the participant refreshes it after each round),
loads it into the running ``OnnxBeatClassifier``, so the device's own predictions use it at
once (``model_version`` becomes ``<version>+personal-<base>``). When a federated release is
running (``classifier.release``), only a head personalised from that release is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import MedchainError
from edge_agent.agent_ports import BeatGate
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.ports import Participant, Uplink
from edge_agent.trainer import PERSONAL_HEAD_FILE, load_personal_head

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent
    from edge_agent.app import ParticipantFactory
    from edge_agent.config import EdgeSettings

_LOGGER = logging.getLogger(__name__)


class PersonalisedParticipant:
    """Implements ``edge_agent.ports.Participant``: delegates, then refreshes the head.

    Parameters
    ----------
    inner : Participant
        The round participant (``AgentParticipant``).
    classifier : OnnxBeatClassifier
        Receives the personal head.
    workdir : Path
        The participant's folder (``personal_head.npz``).
    gate : BeatGate, optional
        The agent's quality gate: told whether the head in use reports S calls inside atrial
        fibrillation as N for this patient (the head's ``s_in_af_as_n``).
    """

    def __init__(
        self,
        inner: Participant,
        classifier: OnnxBeatClassifier,
        workdir: Path,
        gate: BeatGate | None = None,
    ) -> None:
        self._inner = inner
        self._clf = classifier
        self._gate = gate
        self._path = workdir / PERSONAL_HEAD_FILE
        self._stamp: float | None = None
        self.refresh_head()

    def subscriptions(self) -> list[str]:
        """The inner participant's topics."""
        return self._inner.subscriptions()

    async def handle(self, topic: str, payload: bytes) -> None:
        """Delegate one message; pick up a new personal head if the round produced one."""
        await self._inner.handle(topic, payload)
        self.refresh_head()

    def use_classifier(self, classifier: OnnxBeatClassifier) -> None:
        """A new global model is running: load the personal head again if it fits it."""
        self._clf = classifier
        self._stamp = None
        self._patient_rule(False)  # the new model serves its global head until a head fits
        self.refresh_head()

    def refresh_head(self) -> bool:
        """Load the personal head if its file changed; True if a new head is in use."""
        try:
            stamp = self._path.stat().st_mtime_ns
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        head = load_personal_head(self._path.parent)
        if head is None:
            return False
        release = self._clf.release
        if release is not None and head.base_version != release:
            # a head fine-tuned from another global model: the new global head serves until
            # this device takes part in a round of the running model
            _LOGGER.info(
                "personal head from %s does not fit global model %s: global head in use",
                head.base_version,
                release,
            )
            return False
        try:
            self._clf.set_head(
                head.weight,
                head.bias,
                f"personal-{head.base_version}",
                gate=head.v_gate,
                rr_split=head.rr_split,
            )
        except MedchainError as exc:
            _LOGGER.warning("personal head not used: %s", exc)
            return False
        self._patient_rule(head.s_in_af_as_n)
        _LOGGER.info("personal head from %s (%d beats) in use", head.base_version, head.n_examples)
        return True

    def _patient_rule(self, on: bool) -> None:
        if self._gate is not None and self._gate.set_patient_rule(on):
            _LOGGER.info("S calls inside atrial fibrillation reported as N: %s", on)


def federated_participant(
    settings: EdgeSettings, classifier: OnnxBeatClassifier
) -> ParticipantFactory:
    """The default participant: FEDERATED's ``AgentParticipant`` around its
    ``FederatedParticipant`` on the agent's labelled beats (head-only training), with the
    personal head it produces loaded into the running classifier, and every new global model
    a round announcement names (by sha256; or ``settings.pinned_releases``) verified,
    persisted and hot-swapped in (:class:`edge_agent.model_update.ReleaseInstaller`)."""
    from edge_agent.app import activate_classifier
    from edge_agent.examples import BufferExampleSource
    from edge_agent.federated import AgentParticipant, FederatedParticipant
    from edge_agent.model_update import ReleaseInstaller

    def make(agent: EdgeAgent, uplink: Uplink) -> Participant:
        personal: list[PersonalisedParticipant] = []

        def activate(clf: OnnxBeatClassifier) -> None:
            activate_classifier(agent, clf)
            for p in personal:
                p.use_classifier(clf)  # personal heads follow the running global model

        examples = BufferExampleSource(
            agent.buffer.labels.beats,
            classifier.classes,  # releases keep the classes (the installer checks)
            lambda windows, rr: installer.current.feeds(windows, rr),
        )
        inner = FederatedParticipant(
            settings.client_id,
            examples,
            settings.federated_dir,
            classes=classifier.classes,
            pinned=settings.pinned_releases,
        )
        # the participant hands over only releases an announcement (or a pin) names by sha256
        installer = ReleaseInstaller(
            classifier, settings.federated_dir, activate, agent.stats, settings.intra_op_threads
        )
        outer = AgentParticipant(inner, uplink, on_release=installer, stats=agent.stats)
        personal.append(
            PersonalisedParticipant(
                outer,
                classifier,
                settings.federated_dir,
                agent.gate if settings.patient_s_in_af else None,  # None: the rule stays off
            )
        )
        return personal[0]

    return make
