"""The federated seam: a round participant plugged into the agent, personal head in use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from common.protocol import round_current_topic
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.participation import PersonalisedParticipant
from edge_agent.trainer import PersonalHead, save_personal_head
from tests.edge_agent.helpers import CLASSES, EMB, SPEC, build_beat_model


class FakeRoundParticipant:
    """On the round message, 'trains': writes a personal head that says V for everything."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.seen: list[bytes] = []

    def subscriptions(self) -> list[str]:
        return [round_current_topic()]

    async def handle(self, topic: str, payload: bytes) -> None:
        self.seen.append(payload)
        if payload == b"go":
            w = np.zeros((len(CLASSES), EMB), np.float32)
            b = np.array([0, 0, 5, 0, 0], np.float32)
            save_personal_head(PersonalHead(w, b, "g7", 42), self.workdir)


def test_personal_head_is_used_after_a_round(tmp_path: Path) -> None:
    # Prepare
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    inner = FakeRoundParticipant(tmp_path / "state")
    part = PersonalisedParticipant(inner, clf, tmp_path / "state")
    windows = np.zeros((3, SPEC.window_len), np.float32)
    rr = np.full((3, len(SPEC.rr_features)), 1.0, np.float32)
    before = clf.predict(windows, rr).argmax(axis=1)

    # Execute
    async def main() -> None:
        await part.handle(round_current_topic(), b"wait")
        await part.handle(round_current_topic(), b"go")

    asyncio.run(main())
    # Assert
    assert part.subscriptions() == [round_current_topic()]
    assert inner.seen == [b"wait", b"go"]
    assert list(before) == [0, 0, 0]  # global head: N
    assert list(clf.predict(windows, rr).argmax(axis=1)) == [2, 2, 2]  # personal head: V
    assert clf.version == "test-1+personal-g7"
    assert not part.refresh_head()  # unchanged file: not reloaded
    clf.set_head(None, None)
    assert clf.version == "test-1"


def test_a_head_that_does_not_fit_is_ignored(tmp_path: Path) -> None:
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    w = np.zeros((3, 4), np.float32)  # wrong shape for 5 classes x 8
    save_personal_head(PersonalHead(w, np.zeros(3, np.float32), "g1", 1), tmp_path / "s")
    part = PersonalisedParticipant(FakeRoundParticipant(tmp_path / "s"), clf, tmp_path / "s")
    assert clf.version == "test-1"
    assert not part.refresh_head()


def test_the_head_in_use_sets_the_patients_s_in_af_rule_on_the_gate(tmp_path: Path) -> None:
    import dataclasses

    from edge_agent.quality_gate import QualityGate

    # Prepare: a head whose labelled beats confirmed the rhythm monitor's AF calls
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    w, b = np.zeros((len(CLASSES), EMB), np.float32), np.zeros(len(CLASSES), np.float32)
    head = PersonalHead(w, b, "g7", 42, s_in_af_as_n=True)
    save_personal_head(head, tmp_path / "s")
    gate = QualityGate("d")
    # Execute
    part = PersonalisedParticipant(FakeRoundParticipant(tmp_path / "s"), clf, tmp_path / "s", gate)
    on = gate.patient_rule
    save_personal_head(dataclasses.replace(head, s_in_af_as_n=False), tmp_path / "s")
    import os

    os.utime(tmp_path / "s" / "personal_head.npz", ns=(1, 1))  # a new file for the watcher
    part.refresh_head()
    # Assert
    assert on and not gate.patient_rule
    # a new global model serves its own head: the rule goes with the head it came from
    save_personal_head(head, tmp_path / "s")
    os.utime(tmp_path / "s" / "personal_head.npz", ns=(2, 2))
    assert part.refresh_head() and gate.patient_rule
    # a running federated release the head was not fitted from
    other = OnnxBeatClassifier(build_beat_model(tmp_path / "m2"), release="g8")
    part.use_classifier(other)
    assert not gate.patient_rule


def test_default_federated_participant_wires_and_survives_junk(tmp_path: Path) -> None:
    # Prepare: the real FederatedParticipant behind the agent's port
    from edge_agent.app import build_agent
    from edge_agent.config import EdgeSettings
    from edge_agent.participation import federated_participant
    from tests.edge_agent.helpers import FakeUplink

    settings = EdgeSettings(client_id="dev", workdir=tmp_path / "fl", federated=True)
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    up = FakeUplink()
    agent = build_agent(settings, clf, uplink=up, buffer_path=tmp_path / "b.sqlite")
    part = federated_participant(settings, clf)(agent, up)

    # Execute: malformed round and model messages
    async def main() -> None:
        await part.handle(round_current_topic(), b"\x00junk")
        await part.handle("medchain/v1/model/v9", b"junk")

    asyncio.run(main())
    agent.close()
    # Assert: nothing published, nothing raised, the topics are the FL ones
    assert up.reliable == []
    assert round_current_topic() in part.subscriptions()


def test_the_device_setting_keeps_the_patients_rule_off(tmp_path: Path) -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from edge_agent.config import EdgeSettings
    from edge_agent.participation import federated_participant
    from edge_agent.quality_gate import QualityGate

    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    w, b = np.zeros((len(CLASSES), EMB), np.float32), np.zeros(len(CLASSES), np.float32)
    rules = {}
    for on in (True, False):
        work = tmp_path / f"w{on}"
        save_personal_head(PersonalHead(w, b, "g7", 42, s_in_af_as_n=True), work)
        settings = EdgeSettings(client_id="d", workdir=work, patient_s_in_af=on)
        gate = QualityGate("d")
        agent = SimpleNamespace(
            gate=gate, buffer=SimpleNamespace(labels=SimpleNamespace(beats=None)), stats=None
        )
        federated_participant(settings, clf)(cast(Any, agent), cast(Any, None))
        rules[on] = gate.patient_rule
    assert rules == {True: True, False: False}
