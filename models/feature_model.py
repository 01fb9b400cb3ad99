"""Feature models: softmax regression or a small MLP over a feature vector, torch-free export.

Used by the tasks whose shipped model is linear in hand-made features (``activity``, ``aft``,
``rhythm``; see docs/wrist_and_af.md). A model is a plain dict ``{"mean": (k,), "scale": (k,),
"layers": [(W (in, out), b (out,)), ...]}``: inputs are standardised, every layer but the last
is followed by ReLU, the last by softmax. :func:`predict_proba` (numpy), the ONNX graph of
:func:`feature_model_onnx_bytes` (input ``features`` (N, k); outputs ``probs``, ``logits``
(N, c)) and ``common.signals.accel.FeatureClassifier`` (reads :func:`feature_model_to_json`)
compute the same numbers. Only :func:`fit_mlp` needs torch (imported inside it). This module is
outside ``models/tasks/`` because every module there is treated as a task.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.model_card import (
    Artifact,
    ModelCard,
    OnnxIO,
    TensorSpec,
    TrainingInfo,
    card_path_for,
    save_card,
)
from models.tasks.base import Task

_LOGGER = logging.getLogger(__name__)


FeatureModel = dict[str, Any]


def _standardiser(
    x: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _class_weights(
    y: npt.NDArray[np.int64], n_classes: int, balanced: bool
) -> npt.NDArray[np.float64]:
    """Per-example weights summing to 1 (inverse class frequency when ``balanced``)."""
    n = y.size
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = (n / (n_classes * np.maximum(counts, 1)))[y] if balanced else np.ones(n)
    return np.asarray(w / w.sum())


def fit_softmax(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    n_classes: int,
    l2: float = 1.0,
    balanced: bool = True,
) -> FeatureModel:
    """Multinomial logistic regression with L2 penalty (L-BFGS on standardised features).

    Parameters
    ----------
    x : ndarray, shape (n, k)
        Finite features.
    y : ndarray of int, shape (n,)
        Class indices in ``0..n_classes-1``.
    l2 : float
        Penalty ``l2 / (2 n) * sum(W ** 2)``.
    balanced : bool
        Weight examples by the inverse frequency of their class.

    Returns
    -------
    FeatureModel
        One layer (k, n_classes). Deterministic (convex loss, zero start).
    """
    from scipy.optimize import minimize

    mean, scale = _standardiser(x)
    z = (x - mean) / scale
    n, k = z.shape
    onehot = np.eye(n_classes)[y]
    w_ex = _class_weights(y, n_classes, balanced)

    def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w = theta[: k * n_classes].reshape(k, n_classes)
        logits = z @ w + theta[k * n_classes :]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        val = -float(np.sum(w_ex * np.sum(onehot * logp, axis=1)))
        val += 0.5 * l2 / n * float(np.sum(w * w))
        g = (np.exp(logp) - onehot) * w_ex[:, None]
        return val, np.concatenate([(z.T @ g + l2 / n * w).ravel(), g.sum(axis=0)])

    res = minimize(
        loss,
        np.zeros(k * n_classes + n_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 300},
    )
    w = res.x[: k * n_classes].reshape(k, n_classes)
    return {"mean": mean, "scale": scale, "layers": [(w, res.x[k * n_classes :])]}


def fit_mlp(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    n_classes: int,
    hidden: tuple[int, ...] = (32, 32),
    weight_decay: float = 1e-2,
    epochs: int = 300,
    seed: int = 0,
    balanced: bool = False,
) -> FeatureModel:
    """Small ReLU MLP on standardised features, full-batch AdamW (torch, training side only).

    Seeded and single-threaded-safe (``torch.set_num_threads(2)``); the result is plain numpy
    arrays, so inference and export need no torch.
    """
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    mean, scale = _standardiser(x)
    sizes = [x.shape[1], *hidden, n_classes]
    mods: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods)
    xt = torch.tensor((x - mean) / scale, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.int64)
    wt = torch.tensor(_class_weights(y, n_classes, balanced), dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(net(xt), yt, reduction="none") * wt).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    layers = [
        (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(np.float64))
        for m in linears
    ]
    return {"mean": mean, "scale": scale, "layers": layers}


def predict_proba(model: FeatureModel, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Class probabilities (n, c) of a feature model (numpy; same maths as the ONNX graph)."""
    h = (np.atleast_2d(x) - model["mean"]) / model["scale"]
    layers = model["layers"]
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    h = h - h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def feature_model_onnx_bytes(model: FeatureModel, input_name: str = "features") -> bytes:
    """ONNX graph of a feature model: inputs ``features`` (N, k); outputs ``probs``, ``logits``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    inits = [
        numpy_helper.from_array(np.asarray(model["mean"], f32), "mean"),
        numpy_helper.from_array(np.asarray(model["scale"], f32), "scale"),
    ]
    nodes = [
        helper.make_node("Sub", [input_name, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["h0"]),
    ]
    layers = model["layers"]
    for i, (w, b) in enumerate(layers):
        inits += [
            numpy_helper.from_array(np.asarray(w, f32), f"W{i}"),
            numpy_helper.from_array(np.asarray(b, f32), f"b{i}"),
        ]
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"W{i}"], [f"m{i}"]))
        last = i == len(layers) - 1
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["logits" if last else f"a{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    k, c = int(np.size(model["mean"])), int(np.shape(layers[-1][0])[1])
    graph = helper.make_graph(
        nodes,
        "feature_model",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", k])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", c]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def feature_model_to_json(
    model: FeatureModel, classes: tuple[str, ...], feature_names: list[str]
) -> dict[str, Any]:
    """JSON-ready weights (read back by ``common.signals.accel.FeatureClassifier.from_dict``)."""
    return {
        "classes": list(classes),
        "feature_names": feature_names,
        "mean": np.asarray(model["mean"]).tolist(),
        "scale": np.asarray(model["scale"]).tolist(),
        "layers": [
            {"weight": np.asarray(w).tolist(), "bias": np.asarray(b).tolist()}
            for w, b in model["layers"]
        ],
    }


def save_feature_model(
    model: FeatureModel,
    out_path: Path,
    *,
    task: Task,
    metrics: dict[str, dict[str, Any]],
    training: TrainingInfo,
) -> Path:
    """Write ``<name>.onnx`` (torch-free graph), ``<name>.json`` (numpy weights) and the card.

    Returns the card path. The JSON (:func:`feature_model_to_json`) lets a device without
    onnxruntime run the model with ``common.signals.accel.FeatureClassifier``.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_bytes = feature_model_onnx_bytes(model)
    out_path.write_bytes(onnx_bytes)
    contract = task.contract()
    names = [f.name for f in contract.features]
    weights = feature_model_to_json(model, task.classes, names)
    out_path.with_suffix(".json").write_text(
        json.dumps({"task": task.name, **weights}) + "\n", encoding="utf-8"
    )
    k, c = len(names), len(task.classes)
    kind = "softmax" if len(model["layers"]) == 1 else "mlp"
    card = ModelCard(
        task=task.name,
        classes=task.classes,
        description=task.description,
        input_contract=contract,
        onnx=OnnxIO(
            inputs=(TensorSpec("features", ("N", k)),),
            outputs=(TensorSpec("probs", ("N", c)), TensorSpec("logits", ("N", c))),
        ),
        head=None,
        training=training,
        metrics=metrics,
        artifact=Artifact(
            file=out_path.name,
            size_bytes=len(onnx_bytes),
            sha256=hashlib.sha256(onnx_bytes).hexdigest(),
            quantization=f"fp32 ({kind} over {k} features, {len(onnx_bytes)} bytes: int8 would save nothing)",
        ),
        version=f"{task.name}-{kind}-1",
    )
    path = card_path_for(out_path)
    save_card(card, path)
    return path
