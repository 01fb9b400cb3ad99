"""A running ``--federated`` agent picks up a global model the aggregator publishes on a real
private mosquitto: the aggregator's own re-headed release (patched ONNX, card with the round's
metrics) is verified, persisted and hot-swapped while MIT-BIH record 100 streams."""

from __future__ import annotations

import asyncio
import json
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
from common.protocol import model_topic
from edge_agent.app import DEFAULT_MODEL, run_edge
from edge_agent.config import EdgeSettings
from edge_agent.model_update import installed_model
from tests.support.services import run_mosquitto

pytestmark = pytest.mark.integration

CID = "dev-fl"


def test_global_model_release_is_hot_swapped_mid_stream(data_root: Path, tmp_path: Path) -> None:
    # Prepare: round 1's release whose head says V for every beat, retained on model/v1
    base = release_from_model_dir(DEFAULT_MODEL)
    classes = json.loads(DEFAULT_MODEL.with_name("beat.card.json").read_text())["classes"]
    bias = np.full(len(classes), -50.0, np.float32)
    bias[classes.index("V")] = 50.0
    tensors = {HEAD_W: np.zeros_like(base.tensors[HEAD_W]), HEAD_B: bias}
    release = next_release(base, tensors, 1, {"round": 1})
    payload, _ = wire_release(release, 1)
    with run_mosquitto() as broker:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="aggregator")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(model_topic("v1"), payload, qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
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
    assert swapped and all(b["label"] in ("V", "Q") for b in swapped)
    assert all(b["label"] != "V" for b in beats if b not in swapped)  # record 100: no VEB early
