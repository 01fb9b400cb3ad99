"""Whole-model federated releases of the rhythm v2 student (N / AF / O / noisy).

The rhythm counterpart of :mod:`models.federated`: the federated tensors are every float
weight of a :class:`~models.rhythm_net.RhythmNet` student (its ``state_dict``: the feature
standardisation buffers and the batch-norm statistics included, so FedAvg averages them like
any weight); after each round the server exports the aggregate to ONNX with a dynamic length
axis, quantizes it to int8 calibrated on recordings it holds itself (MIT-BIH DS1 and AFTDB
windows: no device's signal is needed) and cards it. The card's ``federated.net`` entry says
``task: rhythm`` and names the inputs, so a device rebuilds the right network
(:func:`models.federated.net_from_card`).

Version 0 is the student from a seeded random start, its feature standardisation taken from
the server's calibration windows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.fl_protocol import ModelRelease, Tensors
from common.model_card import (
    Artifact,
    ModelCard,
    TrainingInfo,
    card_path_for,
    file_sha256,
    save_card,
)
from models.cards import QUANTIZATION
from models.federated import load_tensors, net_from_card, net_tensors, release_card
from models.quantize import stratified_indices
from models.rhythm_data import WindowBank
from models.rhythm_export import INPUT_NAMES, export_rhythm_onnx, onnx_io, quantize_rhythm
from models.rhythm_metrics import rhythm_metrics
from models.rhythm_net import RhythmNet
from models.rhythm_scoring import onnx_window_probs, record_probabilities
from models.tasks.base import NetSpec
from models.tasks.rhythm import CLASSES, TASK

TASK_KEY = "rhythm"
CARD_WINDOWS_PER_CLASS = 40


def rhythm_net_card(net: RhythmNet) -> dict[str, Any]:
    """What a device needs to rebuild ``net`` (``card["federated"]["net"]``)."""
    return {"task": TASK_KEY, "inputs": list(INPUT_NAMES), **net.meta()}


def rhythm_net_from_card(d: Mapping[str, Any]) -> RhythmNet:
    """The network of a :func:`rhythm_net_card` entry (load the release's tensors into it)."""
    spec = dict(d["spec"])
    net_spec = NetSpec(**{**spec, "widths": tuple(int(w) for w in spec["widths"])})
    k = int(d["n_features"])
    return RhythmNet(net_spec, np.zeros(k), np.ones(k), int(d["n_classes"]))


def rhythm_release(
    net: RhythmNet,
    calibration: WindowBank,
    *,
    version: str,
    round_no: int,
    metrics: Mapping[str, Any],
    seed: int = 0,
) -> ModelRelease:
    """Export, quantize and card ``net``: a whole-model rhythm release.

    ``calibration`` holds the server's own windows (int8 static calibration, class-stratified
    30 s windows); the card's figures are on them (the server holds no device's recordings).
    ``metrics["backbone_sha256"]`` is the new int8 file's hash.
    """
    net.eval()
    with tempfile.TemporaryDirectory(prefix="medchain-rhythm-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "model.onnx"
        export_rhythm_onnx(net, fp32)
        quantize_rhythm(fp32, int8, calibration, seed=seed)
        onnx_bytes = int8.read_bytes()
        card = _card(net, int8, calibration, onnx_bytes, round_no, seed)
    kept = {**metrics, "backbone_sha256": hashlib.sha256(onnx_bytes).hexdigest()}
    files = {"model.onnx": onnx_bytes, "model.card.json": json.dumps(card, indent=1).encode()}
    return ModelRelease(version, round_no, net_tensors(net), files, kept)


def _card(
    net: RhythmNet, int8: Path, calibration: WindowBank, onnx_bytes: bytes, round_no: int,
    seed: int,
) -> dict[str, Any]:  # fmt: skip
    # a class-stratified sample of the server's windows: figures for the card in about a second
    pool = np.flatnonzero(~calibration.short)
    idx = pool[stratified_indices(calibration.labels[pool], CARD_WINDOWS_PER_CLASS, seed)]
    records, probs, labels = record_probabilities(
        calibration, onnx_window_probs(onnx_bytes, calibration, idx), idx
    )
    server = rhythm_metrics(labels, probs.argmax(axis=1))
    sha = file_sha256(int8)
    card = ModelCard(
        task=TASK.name,
        classes=CLASSES,
        description=TASK.description,
        input_contract=TASK.contract(),
        onnx=onnx_io(net),
        head=None,
        training=TrainingInfo(
            data="federated: the devices' own labelled recordings (never sent)",
            split=f"metrics on {len(records)} of the server's recordings "
            "(MIT-BIH DS1, AFTDB windows)",
            seed=seed,
            command="models.federated_rhythm.rhythm_release (aggregator, per full round)",
            class_counts=dict.fromkeys(CLASSES, 0),
            notes=f"whole-model federated rhythm release of round {round_no}; "
            f"student {asdict(net.spec)}",
        ),
        metrics={"server_calibration_int8": {**server, "split": "server calibration windows"}},
        artifact=Artifact(
            file="model.onnx", size_bytes=len(onnx_bytes), sha256=sha, quantization=QUANTIZATION
        ),  # fmt: skip
        version=f"rhythm-fl-{sha[:12]}",
    )
    save_card(card, card_path_for(int8))
    out = dict(json.loads(card_path_for(int8).read_text()))
    out["federated"] = {"round_no": round_no, "net": rhythm_net_card(net)}
    return out


def initial_rhythm_release(
    calibration: WindowBank, seed: int = 0, pretrain_epochs: int = 0
) -> ModelRelease:
    """Version 0: the task's student from a seeded random start (features standardised with
    the calibration windows' mean and scale), or trained ``pretrain_epochs`` epochs on those
    windows (the server's own MIT-BIH and AFTDB recordings) with the task's recipe."""
    torch.manual_seed(seed)
    full = calibration.features[~calibration.short].astype(np.float64)
    net = RhythmNet(TASK.student, full.mean(axis=0), full.std(axis=0), len(CLASSES))
    source = f"random rhythm student, seed {seed}"
    if pretrain_epochs > 0:
        from models.rhythm_train import fit_rhythm

        fit_rhythm(net, calibration, replace(TASK.train, epochs=pretrain_epochs), seed=seed)
        source = f"rhythm student, seed {seed}, {pretrain_epochs} epochs on the server's windows"
    return rhythm_release(net, calibration, version="v0", round_no=0, seed=seed,
                          metrics={"source": source})  # fmt: skip


def next_rhythm_release(
    base: ModelRelease, tensors: Tensors, round_no: int, calibration: WindowBank
) -> ModelRelease:
    """The release of a closed full round: the base network with the aggregated weights."""
    net = net_from_card(release_card(base))
    if not isinstance(net, RhythmNet):
        raise ValueError("not a rhythm network: build beat releases with models.federated")
    load_tensors(net, tensors)
    kept = {k: v for k, v in base.metrics.items() if k != "backbone_sha256"}
    return rhythm_release(net, calibration, version=base.version, round_no=round_no,
                          metrics=kept)  # fmt: skip
