"""Federated global model releases on a running agent: verified, persisted, hot-swapped; a bad
release is counted and the agent keeps serving its model."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from common import fl_protocol as fl
from common import protocol as proto
from common.types import SignalChunk, StreamKind
from edge_agent.agent import EdgeAgent
from edge_agent.app import build_agent
from edge_agent.config import EdgeSettings
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.model_update import CURRENT_FILE, MODELS_DIR, installed_model
from edge_agent.participation import federated_participant
from edge_agent.ports import Participant
from edge_agent.trainer import PersonalHead, save_personal_head
from tests.edge_agent.helpers import CLASSES, EMB, SPEC, FakeUplink, build_beat_model, synthetic_ecg
from tests.support.invitations import invite

V_BIAS = np.array([0.0, -5.0, 40.0, -5.0, -5.0], np.float32)  # the new global head says V


def _release(
    folder: Path, version: str = "v1", round_no: int = 1, onnx_bytes: bytes = b""
) -> bytes:
    """A model release as the aggregator publishes it: the base ONNX re-headed, its card."""
    path = build_beat_model(folder)
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name == "head_b":
            init.CopyFrom(numpy_helper.from_array(V_BIAS, "head_b"))
    files = {
        "model.onnx": onnx_bytes or model.SerializeToString(),
        "model.card.json": path.with_name("beat.card.json").read_bytes(),
    }
    tensors = {"head.weight": np.zeros((len(CLASSES), EMB), np.float32), "head.bias": V_BIAS}
    return fl.encode_model(fl.ModelRelease(version, round_no, tensors, files, {}))


def _announce(version: str, sha: str) -> bytes:
    now = time.time_ns()
    return fl.encode_round(
        fl.RoundAnnouncement(
            "1",
            "g1",
            1,
            5,
            0,
            version,
            sha,
            now + 60 * 10**9,
            now,
            invite(["other"], ["dev"]),
            fl.RoundConfig(),
        )
    )


def _announce_and_publish(part: Participant, version: str, payload: bytes) -> None:
    """The aggregator's round announcement naming ``payload``'s hash, then the release."""

    async def main() -> None:
        sha = hashlib.sha256(payload).hexdigest()
        await part.handle(proto.round_current_topic(), _announce(version, sha))
        await part.handle(proto.model_topic(version), payload)

    asyncio.run(main())


def _ecg_chunk(part: int) -> SignalChunk:
    """Half ``part`` of 24 regular beats (never premature: the base model says N)."""
    x, _ = synthetic_ecg([0.8] * 24, fs=SPEC.sampling_rate_hz)
    half = len(x) // 2
    seq = part * half
    t0 = 1_700_000_000_000_000_000 + round(seq * 1e9 / SPEC.sampling_rate_hz)
    samples = x[seq : seq + half, None]
    return SignalChunk(StreamKind.ECG, SPEC.sampling_rate_hz, t0, samples, seq)


def _setup(tmp_path: Path) -> tuple[EdgeSettings, EdgeAgent, Participant]:
    settings = EdgeSettings(client_id="dev", workdir=tmp_path / "fl", federated=True)
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    up = FakeUplink()
    agent = build_agent(settings, clf, uplink=up, buffer_path=tmp_path / "b.sqlite")
    return settings, agent, federated_participant(settings, clf)(agent, up)


def test_new_global_model_is_verified_persisted_and_hot_swapped(tmp_path: Path) -> None:
    # Prepare: a running agent on the base model, a stale personal head from v0
    settings, agent, part = _setup(tmp_path)
    save_personal_head(
        PersonalHead(np.zeros((5, EMB), np.float32), np.zeros(5, np.float32), "v0", 9),
        settings.workdir,
    )
    before = agent.pipeline.process(_ecg_chunk(0)).beats
    payload = _release(tmp_path / "g")

    # Execute: the aggregator announces and publishes v1
    _announce_and_publish(part, "v1", payload)
    after = agent.pipeline.process(_ecg_chunk(1)).beats
    agent.close()

    # Assert: predictions come from the new model, which is on disk and recorded
    assert before and all(b.label == "N" for b in before)
    assert after and all(b.label == "V" for b in after)
    assert all(b.model_version == "test-1@v1" for b in after)  # stale v0 head not applied
    assert agent.stats.models_installed == 1 and agent.stats.models_rejected == 0
    installed = installed_model(settings.workdir)
    assert installed is not None and (installed.release, installed.round_no) == ("v1", 1)
    assert installed.path.read_bytes() == fl.decode_model(payload).files["model.onnx"]
    # a head personalised from v1 (the device's next round) is picked up on the next message
    save_personal_head(
        PersonalHead(np.zeros((5, EMB), np.float32), np.zeros(5, np.float32), "v1", 9),
        settings.workdir,
    )
    asyncio.run(part.handle(proto.round_current_topic(), b""))
    assert agent.pipeline.model_version == "test-1@v1+personal-v1"
    # a restart with --federated serves the installed model
    from edge_agent.app import load_classifier

    assert load_classifier(settings).version == "test-1@v1"


def test_bad_releases_are_rejected_and_the_agent_keeps_serving(tmp_path: Path) -> None:
    # Prepare
    settings, agent, part = _setup(tmp_path)
    garbage = _release(tmp_path / "g1", "v2", 2, onnx_bytes=b"not an onnx graph")
    good = _release(tmp_path / "g2", "v3", 3)
    other_classes = fl.decode_model(good)
    card = json.loads(other_classes.files["model.card.json"])
    card["classes"] = ["N", "S", "V", "F", "X"]
    wrong_classes = fl.encode_model(
        dataclasses.replace(
            other_classes,
            version="v4",
            files={**other_classes.files, "model.card.json": json.dumps(card).encode()},
        )
    )
    no_files = fl.encode_model(dataclasses.replace(other_classes, version="v5", files={}))

    # Execute: announced releases with a garbage ONNX, a class change, no files; then one
    # that contradicts the announcement's hash
    for version, payload in (("v2", garbage), ("v4", wrong_classes), ("v5", no_files)):
        _announce_and_publish(part, version, payload)

    async def main() -> None:
        await part.handle(proto.round_current_topic(), _announce("v3", "0" * 64))
        await part.handle(proto.model_topic("v3"), good)

    asyncio.run(main())
    beats = agent.pipeline.process(_ecg_chunk(0)).beats
    agent.close()

    # Assert: three rejections, the hash mismatch never reaches the installer, the base model
    # still classifies, nothing left installed
    assert agent.stats.models_rejected == 3 and agent.stats.models_installed == 0
    assert beats and all(b.label == "N" and b.model_version == "test-1" for b in beats)
    assert installed_model(settings.workdir) is None
    models = settings.workdir / MODELS_DIR
    assert not models.exists() or [p.name for p in models.iterdir()] == []
    assert not (models / CURRENT_FILE).exists()


def test_an_unannounced_release_is_ignored_and_never_blocks_the_real_one(tmp_path: Path) -> None:
    # Prepare: a release of v1 nobody announced (a forged one, or a stale retained message of
    # an earlier deployment), then the real v1 with other content
    settings, agent, part = _setup(tmp_path)
    stale = _release(tmp_path / "stale", "v1", 1)
    stale = fl.encode_model(dataclasses.replace(fl.decode_model(stale), metrics={"old": 1}))
    real = _release(tmp_path / "real", "v1", 1)
    assert stale != real

    async def main() -> list[int]:
        seen = []
        await part.handle(proto.model_topic("v1"), stale)  # arrives first: held, not used
        seen.append(agent.stats.models_installed)
        sha = hashlib.sha256(real).hexdigest()
        await part.handle(proto.round_current_topic(), _announce("v1", sha))
        seen.append(agent.stats.models_installed)
        await part.handle(proto.model_topic("v1"), real)  # same version, the announced hash
        seen.append(agent.stats.models_installed)
        await part.handle(proto.model_topic("v1"), stale)  # delivered again: still ignored
        return seen

    # Execute
    installed_after = asyncio.run(main())
    agent.close()

    # Assert: nothing installed until the announced release arrived; the stale one counted
    assert installed_after == [0, 0, 1]
    assert agent.stats.models_installed == 1 and agent.stats.models_rejected == 0
    assert agent.stats.models_unannounced >= 1
    model = installed_model(settings.workdir)
    assert (
        model is not None and model.path.read_bytes() == fl.decode_model(real).files["model.onnx"]
    )


def test_a_pinned_release_is_installed_without_an_announcement(tmp_path: Path) -> None:
    # Prepare: the device pins the release's hash (e.g. its operator's rollout list)
    payload = _release(tmp_path / "g", "v1", 1)
    settings = EdgeSettings(
        client_id="dev",
        workdir=tmp_path / "fl",
        federated=True,
        pinned_releases=(hashlib.sha256(payload).hexdigest(),),
    )
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    up = FakeUplink()
    agent = build_agent(settings, clf, uplink=up, buffer_path=tmp_path / "b.sqlite")
    part = federated_participant(settings, clf)(agent, up)

    # Execute
    asyncio.run(part.handle(proto.model_topic("v1"), payload))
    agent.close()

    # Assert
    assert agent.stats.models_installed == 1


def test_a_release_this_cpu_computes_differently_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the base model serving; then every model loaded looks like an 8-bit-weight
    # model on an x86 CPU without VNNI (fused kernels 0.5 away from the reference)
    settings, agent, part = _setup(tmp_path)
    monkeypatch.setattr("edge_agent.inference.kernel_gap", lambda path, card, fused: 0.5)
    payload = _release(tmp_path / "g", "v1", 1)

    # Execute
    _announce_and_publish(part, "v1", payload)
    beats = agent.pipeline.process(_ecg_chunk(0)).beats
    agent.close()

    # Assert: rejected, the validated base model keeps serving, nothing installed
    assert agent.stats.models_rejected == 1 and agent.stats.models_installed == 0
    assert beats and all(b.model_version == "test-1" for b in beats)
    assert installed_model(settings.workdir) is None
