"""Whole-model federated rhythm: releases rebuilt from their card, devices that train every
weight on their own (padded) windows, the server's per-recording evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cloud_aggregator.evaluation_rhythm import RhythmEvaluator
from common.fl_protocol import RoundAnnouncement, RoundConfig, decode_update, encode_update
from edge_agent.trainer import LabelledExamples
from edge_agent.trainer_torch import full_round_update
from models.federated import load_tensors, net_from_card, release_card
from models.federated_rhythm import initial_rhythm_release, next_rhythm_release
from models.rhythm_data import BankBuilder, WindowBank
from models.rhythm_devices import device_arrays
from models.rhythm_metrics import cinc_mean_f1
from models.rhythm_net import RhythmNet
from models.rhythm_scoring import onnx_window_probs, record_probabilities
from tests.common.signals.synthetic import synthetic_ecg
from tests.support.invitations import invite


@pytest.fixture(scope="module")
def bank() -> WindowBank:
    """16 synthetic recordings of 12-40 s (AF = irregular RR), four classes."""
    builder = BankBuilder()
    for i in range(16):
        label = i % 4
        x, _ = synthetic_ecg(
            300.0, 12.0 + 4 * (i % 8), seed=i, rr_jitter=0.25 if label == 1 else 0.03
        )
        if label == 3:
            x = x + np.random.default_rng(i).normal(0, 600, x.size)
        builder.add(x, 300.0, label, f"r{i:02d}")
    return builder.build()


@pytest.fixture(scope="module")
def release(bank: WindowBank):  # type: ignore[no-untyped-def]
    return initial_rhythm_release(bank, seed=0)


def _announcement(release, config: RoundConfig) -> RoundAnnouncement:  # type: ignore[no-untyped-def]
    return RoundAnnouncement("7", "g1", 1, 3, 0, release.version, "0" * 64, 2**62, 0,
                             invite(["cinc-r01"]), config)  # fmt: skip


def test_a_rhythm_release_rebuilds_its_network_from_the_card(bank: WindowBank, release) -> None:  # type: ignore[no-untyped-def]
    # Execute
    card = release_card(release)
    net = net_from_card(card)
    load_tensors(net, release.tensors)
    moved = {k: v + np.float32(0.01) if k.startswith("head.") else v
             for k, v in release.tensors.items()}  # fmt: skip
    later = next_rhythm_release(release, moved, 1, bank)
    # Assert: the card names the task and inputs; the weights, buffers and statistics travel
    assert card["federated"]["net"]["task"] == "rhythm"
    assert card["federated"]["net"]["inputs"] == ["ecg", "features"]
    assert isinstance(net, RhythmNet) and card["task"] == "rhythm"
    assert {"feature_mean", "feature_scale", "head.weight"} <= set(release.tensors)
    assert any(k.endswith("running_var") for k in release.tensors)
    np.testing.assert_allclose(later.tensors["head.bias"], release.tensors["head.bias"] + 0.01)
    assert later.round_no == 1 and later.metrics["backbone_sha256"] != release.metrics[
        "backbone_sha256"]  # fmt: skip
    assert json.loads(later.files["model.card.json"])["federated"]["round_no"] == 1


def test_a_device_trains_every_weight_on_its_padded_windows(bank: WindowBank, release) -> None:  # type: ignore[no-untyped-def]
    # Prepare: one device holding an AF recording of 12 s and one of 28 s (padded to 28 s)
    short = np.flatnonzero(~bank.short & np.isin(bank.records, ["r01", "r05"]))
    arrays = device_arrays(bank, short)
    labels = arrays.pop("labels").astype(np.int64)
    examples = LabelledExamples({k: v.astype(np.float32) for k, v in arrays.items()}, labels)
    config = RoundConfig(mode="full", local_epochs=30, lr=0.01, batch_size=8, mu=0.0,
                         compression="int8")  # fmt: skip
    # Execute
    update = full_round_update(_announcement(release, config), release, examples, "cinc-r01")
    back = decode_update(encode_update(update))
    # Assert: every tensor travels; the trained network calls the device's windows AF
    assert set(back.delta) == set(release.tensors)
    assert update.metrics["eval_n"] == len(labels) and "loss" in update.metrics
    net = net_from_card(release_card(release))
    load_tensors(net, {k: release.tensors[k] + back.delta[k] for k in release.tensors})
    net.eval()
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(examples.inputs["ecg"]),
                        torch.from_numpy(examples.inputs["features"]),
                        torch.from_numpy(arrays["lengths"].astype(np.int64)))  # fmt: skip
    assert (logits.argmax(1).numpy() == 1).all()


def test_the_server_scores_one_decision_per_recording(bank: WindowBank, release) -> None:  # type: ignore[no-untyped-def]
    # Execute
    scores = RhythmEvaluator(bank)(release)
    # Assert: macro_f1 is the CinC score of the recordings' mean window probabilities
    idx = np.flatnonzero(~bank.short)
    _, probs, labels = record_probabilities(
        bank, onnx_window_probs(release.files["model.onnx"], bank, idx), idx
    )
    expected = cinc_mean_f1(labels, probs.argmax(1))
    assert scores["macro_f1"] == pytest.approx(expected) == scores["cinc_mean_f1"]
    assert scores["recordings"] == 16 and {"se_AF", "af_f1", "f1_noisy"} <= set(scores)


def test_version_one_can_start_from_the_servers_own_windows(bank: WindowBank, release) -> None:  # type: ignore[no-untyped-def]
    # Execute: two epochs on the server's windows from the same seeded start
    trained = initial_rhythm_release(bank, seed=0, pretrain_epochs=2)
    # Assert: same start, other weights; the release says where it came from
    assert "2 epochs on the server's windows" in trained.metrics["source"]
    assert "random" in release.metrics["source"]
    assert not np.allclose(trained.tensors["head.weight"], release.tensors["head.weight"])
