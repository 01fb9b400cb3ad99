"""The federated seam: a round participant plugged into the agent, personal head in use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from common.protocol import Channel, client_topic, round_current_topic
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.participation import FederatedBridge
from edge_agent.trainer import PersonalHead, save_personal_head
from tests.edge_agent.helpers import CLASSES, EMB, SPEC, FakeUplink, build_beat_model


class FakeParticipant:
    """Trains when the round message arrives: writes a personal head, returns one update."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.seen: list[str] = []
        self.ready = False

    def subscriptions(self) -> list[str]:
        return [round_current_topic()]

    def on_message(self, topic: str, payload: bytes) -> None:
        self.seen.append(topic)
        self.ready = payload == b"go"

    def poll(self) -> list[tuple[str, bytes]]:
        if not self.ready:
            return []
        self.ready = False
        w = np.zeros((len(CLASSES), EMB), np.float32)
        b = np.array([0, 0, 5, 0, 0], np.float32)  # this patient's head says V
        save_personal_head(PersonalHead(w, b, "g7", 42), self.workdir)
        return [(client_topic(Channel.UPDATE, "dev"), b"update-bytes")]


def test_round_update_published_and_personal_head_used(tmp_path: Path) -> None:
    # Prepare
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    up = FakeUplink()
    inner = FakeParticipant(tmp_path / "state")
    bridge = FederatedBridge(inner, up, clf, tmp_path / "state")
    windows = np.zeros((3, SPEC.window_len), np.float32)
    rr = np.full((3, len(SPEC.rr_features)), 1.0, np.float32)
    before = clf.predict(windows, rr).argmax(axis=1)

    # Execute
    async def main() -> None:
        await bridge.handle(round_current_topic(), b"wait")
        await bridge.handle(round_current_topic(), b"go")

    asyncio.run(main())
    # Assert
    assert bridge.subscriptions() == [round_current_topic()]
    assert up.reliable == [(client_topic(Channel.UPDATE, "dev"), b"update-bytes")]
    assert list(before) == [0, 0, 0]  # global head: N
    assert list(clf.predict(windows, rr).argmax(axis=1)) == [2, 2, 2]  # personal head: V
    assert clf.version == "test-1+personal-g7"
    clf.set_head(None, None)
    assert clf.version == "test-1"
