"""A running ``--federated`` agent and global model releases on a real private mosquitto.

- The aggregator's own re-headed release (patched ONNX, card with the round's metrics), named
  by the retained round announcement, is verified, persisted and hot-swapped while MIT-BIH
  record 100 streams.
- A retained release left on the broker by an earlier deployment (same version number, other
  content) no longer deadlocks the device: it takes part in the round that names the real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_aggregator.releases import (
    HEAD_B,
    HEAD_W,
    next_release,
    release_from_model_dir,
    wire_release,
)
from common import fl_protocol as fl
from common.protocol import Channel, model_topic, round_current_topic
from edge_agent.agent import AgentStats
from edge_agent.app import DEFAULT_MODEL, run_edge
from edge_agent.config import EdgeSettings
from edge_agent.model_update import installed_model
from medchain.synthetic_ecg import simulate_ecg, write_wfdb
from tests.support.invitations import invite
from tests.support.services import run_mosquitto

pytestmark = pytest.mark.integration

CID = "dev-fl"


@pytest.mark.datasets("mitdb")
def test_global_model_release_is_hot_swapped_mid_stream(data_root: Path, tmp_path: Path) -> None:
    # Prepare: round 1's release whose head says V for every beat, retained on model/v1
    base = release_from_model_dir(DEFAULT_MODEL)
    classes = json.loads(DEFAULT_MODEL.with_name("beat.card.json").read_text())["classes"]
    bias = np.full(len(classes), -50.0, np.float32)
    bias[classes.index("V")] = 50.0
    tensors = {HEAD_W: np.zeros_like(base.tensors[HEAD_W]), HEAD_B: bias}
    release = next_release(base, tensors, 1, {"round": 1})
    payload, sha = wire_release(release, 1)
    with run_mosquitto() as broker:
        _retain(broker.port, model_topic("v1"), payload)
        _retain(broker.port, round_current_topic(), _announcement("v1", sha, ("other",)))
        settings = EdgeSettings(
            client_id=CID,
            source=f"replay:{data_root / 'mitdb' / '100'}?duration_s=8&chunk_s=0.5",
            speed="realtime",
            broker_url=broker.url,
            buffer_path=tmp_path / "buf.sqlite",
            out_path=tmp_path / "out.jsonl",
            workdir=tmp_path / "state",
            federated=True,
        )

        # Execute
        stats = asyncio.run(run_edge(settings))

    # Assert: installed once, persisted with its hash, later beats from the new model
    assert stats.models_installed == 1 and stats.models_rejected == 0
    model = installed_model(tmp_path / "state")
    assert model is not None and model.release == "v1"
    assert model.path.read_bytes() == release.files["model.onnx"]
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    beats = [r for r in lines if r["type"] == "beat"]
    swapped = [b for b in beats if b["model_version"].endswith("@v1")]
    assert len(beats) == stats.beats > 5
    # every beat V from the new head; the card's template veto (models/template_veto.py) serves
    # those that look like the wearer's usual beat as Q (on record 100's normal rhythm: all of
    # them once the template has formed), so N/S/F would mean the old model
    assert swapped and all(b["pred"] in ("V", "Q") for b in swapped)
    assert all(b["pred"] != "V" for b in beats if b not in swapped)  # record 100: no VEB early


def _retain(port: int, topic: str, payload: bytes) -> None:
    """Publish one retained QoS 1 message as the aggregator would."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"aggregator-{time.monotonic_ns()}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _announcement(version: str, sha: str, selected: tuple[str, ...]) -> bytes:
    now = time.time_ns()
    cfg = fl.RoundConfig(local_epochs=1)
    return fl.encode_round(
        fl.RoundAnnouncement(
            "1",
            "g1",
            1,
            3,
            0,
            version,
            sha,
            now + 60 * 10**9,
            now,
            invite(selected, [CID, "other"]),
            cfg,
        )
    )


def _headed(base: fl.ModelRelease, cls: int, metrics: dict[str, float]) -> tuple[bytes, str]:
    """Round 1's release ``v1`` whose head prefers class index ``cls``."""
    bias = np.zeros_like(base.tensors[HEAD_B])
    bias[cls] = 5.0
    tensors = {HEAD_W: base.tensors[HEAD_W], HEAD_B: bias}
    return wire_release(next_release(base, tensors, 1, metrics), 1)


def test_a_stale_retained_release_of_the_same_version_does_not_deadlock_the_device(
    tmp_path: Path,
) -> None:
    # Prepare: an earlier deployment left its v1 retained; a simulated, annotated record gives
    # the device labelled beats to train on
    base = release_from_model_dir(DEFAULT_MODEL)
    stale, _ = _headed(base, 0, {"round": 1, "deployment": 1})
    real, real_sha = _headed(base, 1, {"round": 1, "deployment": 2})
    record = write_wfdb(simulate_ecg(45.0, seed=3), tmp_path / "rec", "sim3")
    updates: list[str] = []
    with run_mosquitto() as broker:
        _retain(broker.port, model_topic("v1"), stale)
        watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.on_message = lambda c, u, m: updates.append(m.topic)
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe(f"medchain/v1/{Channel.UPDATE}/#", qos=1)
        watcher.loop_start()
        settings = EdgeSettings(
            client_id=CID,
            source=f"replay:{record}?chunk_s=0.5",
            speed="realtime",
            broker_url=broker.url,
            buffer_path=tmp_path / "buf.sqlite",
            out_path=tmp_path / "out.jsonl",
            workdir=tmp_path / "state",
            federated=True,
        )

        async def scenario() -> AgentStats:
            stop = asyncio.Event()
            agent = asyncio.create_task(run_edge(settings, stop=stop))
            out = tmp_path / "out.jsonl"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not agent.done():
                if out.is_file() and out.read_text().count('"type":"beat"') >= 10:
                    break
                await asyncio.sleep(0.1)
            # the new deployment's aggregator: its own v1, then the round that names it
            await asyncio.to_thread(_retain, broker.port, model_topic("v1"), real)
            ann = _announcement("v1", real_sha, (CID,))
            await asyncio.to_thread(_retain, broker.port, round_current_topic(), ann)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not updates and not agent.done():
                await asyncio.sleep(0.1)
            stop.set()
            return await agent

        # Execute
        stats = asyncio.run(scenario())
        watcher.loop_stop()
        watcher.disconnect()

    # Assert: the device trained on the announced release and installed it, not the stale one
    assert updates, "the device never sent its update: it is stuck on the stale release"
    assert stats.models_installed == 1
    model = installed_model(tmp_path / "state")
    assert model is not None
    assert model.path.read_bytes() == fl.decode_model(real).files["model.onnx"]
