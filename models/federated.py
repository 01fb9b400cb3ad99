"""Whole-model federated releases: a student network's weights <-> a deployable int8 release.

In ``full`` rounds the federated tensors are every float weight of the student network (its
``state_dict``), not only the head. Devices with torch rebuild the network from the release's
card (``card["federated"]["net"]``, :func:`net_card`) and train all of it; devices without
torch train the head on the release's int8 embeddings. After each round the server turns the
aggregated weights back into an int8 model (:func:`release_from_net`: ONNX export, static QDQ
quantization calibrated on the server's own beats, card), so every release still runs on every
device as is.

Torch is imported here: only the aggregator's ``train`` extra and devices that train whole
models need this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from common.fl_protocol import ModelRelease, Tensors
from common.model_card import card_path_for
from models.cards import build_card
from models.evaluate import metrics_from_probs
from models.export import export_onnx, save_head
from models.nets import SignalNet, build_net
from models.predict import onnx_predictor
from models.quantize import calibration_inputs, quantize, stratified_indices
from models.tasks.base import NetSpec, Task, TaskData

NET_KEY = "net"


def net_card(
    spec: NetSpec, in_channels: int, length: int, n_features: int, n_classes: int
) -> dict[str, Any]:
    """What a device needs to rebuild the network (goes in ``card["federated"]["net"]``)."""
    return {"task": "beat", "inputs": ["beat", "rr"], "spec": dataclasses.asdict(spec),
            "in_channels": in_channels, "length": length, "n_features": n_features,
            "n_classes": n_classes}  # fmt: skip


def net_inputs(card: Mapping[str, Any]) -> tuple[str, str]:
    """The (signal, features) input names of a whole-model release (beat ones on older cards)."""
    names = card.get("federated", {}).get(NET_KEY, {}).get("inputs") or ["beat", "rr"]
    return str(names[0]), str(names[1])


def net_from_card(card: Mapping[str, Any]) -> torch.nn.Module:
    """The network a release's card describes (weights from torch's RNG; load the release's):
    a beat :class:`SignalNet`, or a :class:`~models.rhythm_net.RhythmNet` when the entry says
    ``task: rhythm`` (:mod:`models.federated_rhythm`).

    Raises
    ------
    ValueError
        When the card has no (valid) network description: not a whole-model release.
    """
    try:
        d = card["federated"][NET_KEY]
        if d.get("task") == "rhythm":
            from models.federated_rhythm import rhythm_net_from_card

            return rhythm_net_from_card(d)
        spec = d["spec"]
        net_spec = NetSpec(str(spec["kind"]), tuple(int(w) for w in spec["widths"]),
                           int(spec["kernel"]), int(spec["embedding_dim"]),
                           float(spec.get("dropout", 0.1)), int(spec.get("feature_dim", 16)))  # fmt: skip
        return build_net(net_spec, int(d["in_channels"]), int(d["length"]),
                         int(d["n_features"]), int(d["n_classes"]))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the release's card describes no network: {exc}") from exc


def release_card(release: ModelRelease) -> dict[str, Any]:
    """The release's card as a dict (empty without one)."""
    raw = release.files.get("model.card.json")
    return dict(json.loads(raw)) if raw else {}


def net_tensors(net: torch.nn.Module) -> Tensors:
    """Float weights of ``net`` as numpy: the federated tensors of a whole-model release."""
    return {k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in net.state_dict().items() if v.is_floating_point()}  # fmt: skip


def load_tensors(net: torch.nn.Module, tensors: Mapping[str, npt.NDArray[np.float32]]) -> None:
    """Copy federated tensors into ``net`` (a missing or misshaped key raises ValueError)."""
    state = net.state_dict()
    for k, v in tensors.items():
        if k not in state or tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"tensor {k} {tuple(v.shape)} does not fit the network")
        state[k] = torch.from_numpy(np.ascontiguousarray(v))
    net.load_state_dict(state)


def release_from_net(
    task: Task,
    net: SignalNet,
    calibration: TaskData,
    *,
    version: str,
    round_no: int,
    metrics: Mapping[str, Any],
    per_class: int = 60,
    seed: int = 0,
) -> ModelRelease:
    """Export, quantize and card ``net``: a whole-model release whose tensors are its weights.

    ``calibration`` holds server-side beats for the int8 static calibration (``per_class``
    per class). ``metrics["backbone_sha256"]`` is the new int8 file's hash (devices re-embed).
    """
    net.eval()
    names = tuple(task.input_names)
    with tempfile.TemporaryDirectory(prefix="medchain-full-") as tmp:
        fp32, int8, head = Path(tmp) / "fp32.onnx", Path(tmp) / "model.onnx", Path(tmp) / "head.npz"
        io_names = export_onnx(net, fp32, (names[0], names[1]))
        save_head(net, head)
        quantize(fp32, int8, calibration_inputs(calibration, io_names, per_class, seed))
        # the server holds no test patients: the card's figures are on its calibration beats
        subset = calibration.subset(stratified_indices(calibration.labels, per_class, seed + 1))
        probs = onnx_predictor(int8)(subset)
        evaluations = {"validation_server_int8": metrics_from_probs(task, subset, probs)}
        build_card(task, int8, head, io_names, net, evaluations, seed=seed,
                   command="models.federated.release_from_net (aggregator, per full round)",
                   train_counts=np.zeros(len(task.classes), np.int64),
                   notes=f"whole-model federated release of round {round_no}")  # fmt: skip
        card = json.loads(card_path_for(int8).read_text())
        onnx_bytes = int8.read_bytes()
    signal = calibration.signal
    card["federated"] = {"round_no": round_no, NET_KEY: net_card(
        task.student, signal.shape[1], signal.shape[2], calibration.features.shape[1],
        len(task.classes))}  # fmt: skip
    files = {"model.onnx": onnx_bytes, "model.card.json": json.dumps(card, indent=1).encode()}
    kept = {**metrics, "backbone_sha256": hashlib.sha256(onnx_bytes).hexdigest()}
    return ModelRelease(version, round_no, net_tensors(net), files, kept)


def initial_full_release(task: Task, calibration: TaskData, seed: int = 0) -> ModelRelease:
    """Version 0 of a whole-model run: the task's student from a seeded random start."""
    torch.manual_seed(seed)
    signal = calibration.signal
    net = build_net(task.student, signal.shape[1], signal.shape[2],
                    calibration.features.shape[1], len(task.classes))  # fmt: skip
    return release_from_net(task, net, calibration, version="v0", round_no=0,
                            metrics={"source": f"random student, seed {seed}"}, seed=seed)  # fmt: skip


def next_full_release(
    base: ModelRelease, tensors: Tensors, round_no: int, task: Task, calibration: TaskData
) -> ModelRelease:
    """The release of a closed full round: the base network with the aggregated weights."""
    net = net_from_card(release_card(base))
    if not isinstance(net, SignalNet):
        raise ValueError("not a beat network: build rhythm releases with models.federated_rhythm")
    load_tensors(net, tensors)
    kept = {k: v for k, v in base.metrics.items() if k != "backbone_sha256"}
    return release_from_net(task, net, calibration, version=base.version, round_no=round_no,
                            metrics=kept)  # fmt: skip
