"""``activity`` task: 14 wrist activities of daily living (HMP dataset, Bruno et al. 2013).

Each HMP trial (32 Hz, 6-bit codes 0..63 per axis, g = -1.5 + 3 * code / 63) is cut into 4 s
windows with a 2 s step (a trial shorter than 4 s is one window, edge-padded in ``signal``);
every window gives the waveform (3, 128) in g and the :func:`common.signals.accel.acc_features`
vector. The shipped model is a softmax regression over those features trained in numpy
(:func:`fit_softmax`, shared with the ``aft`` and ``rhythm`` tasks), exported to ONNX without torch (:func:`softmax_onnx_bytes`), so the edge
runs it with onnxruntime or with :class:`common.signals.accel.ActivityClassifier` (pure numpy).
The ``*_MODEL`` folders are not used (they re-cut trials of the same volunteers).
Evaluation is leave-one-volunteer-out, per window and per trial (mean window probabilities).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import (
    Artifact,
    FeatureSpec,
    InputContract,
    ModelCard,
    OnnxIO,
    TensorSpec,
    TrainingInfo,
    card_path_for,
    save_card,
)
from common.signals.accel import ACC_FEATURE_NAMES, G_MG, acc_features
from models.metrics import classification_metrics
from models.tasks.base import LoadOptions, NetSpec, Task, TaskData, TrainSpec

_LOGGER = logging.getLogger(__name__)

FS_HZ = 32.0
WINDOW = 128
STEP = 64
CLASSES: tuple[str, ...] = (
    "Brush_teeth",
    "Climb_stairs",
    "Comb_hair",
    "Descend_stairs",
    "Drink_glass",
    "Eat_meat",
    "Eat_soup",
    "Getup_bed",
    "Liedown_bed",
    "Pour_water",
    "Sitdown_chair",
    "Standup_chair",
    "Use_telephone",
    "Walk",
)
_VOLUNTEER = re.compile(r"-([fm]\d+)(?:_\d+)?\.txt$")


# --- feature models (softmax regression or small MLP; torch-free ONNX export) ---------------
# A model is {"mean": (k,), "scale": (k,), "layers": [(W (in, out), b (out,)), ...]}: inputs are
# standardised, every layer but the last is followed by ReLU, the last by softmax.

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


# --- HMP data ------------------------------------------------------------------------------


def read_trial(path: Path) -> npt.NDArray[np.float64]:
    """One HMP trial as acceleration in mg, shape (n, 3).

    Raises
    ------
    CorruptInputError
        If a line does not hold three integers in 0..63.
    """
    try:
        codes = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise CorruptInputError(f"{path}: not an HMP trial ({exc})") from exc
    if codes.ndim != 2 or codes.shape[1] != 3 or codes.size == 0:
        raise CorruptInputError(f"{path}: expected 3 columns, got shape {codes.shape}")
    if codes.min() < 0 or codes.max() > 63:
        raise CorruptInputError(f"{path}: codes outside 0..63")
    return np.asarray((-1.5 + 3.0 * codes / 63.0) * G_MG, dtype=np.float64)


def trial_index(root: Path) -> list[tuple[str, str, Path]]:
    """(activity, volunteer, path) of every trial in the 14 activity folders, sorted by path."""
    out: list[tuple[str, str, Path]] = []
    for activity in CLASSES:
        for path in sorted((root / activity).glob("*.txt")):
            m = _VOLUNTEER.search(path.name)
            if m is None:
                raise CorruptInputError(f"{path.name}: no volunteer id in the file name")
            out.append((activity, m.group(1), path))
    if not out:
        raise DataNotFoundError("HMP activity folders", str(root))
    return out


def segment_windows(acc_mg: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]:
    """4 s windows with a 2 s step (the whole trial when it is shorter than 4 s)."""
    n = acc_mg.shape[0]
    if n <= WINDOW:
        return [acc_mg]
    return [acc_mg[s : s + WINDOW] for s in range(0, n - WINDOW + 1, STEP)]


def load_windows(options: LoadOptions) -> tuple[TaskData, npt.NDArray[np.int64]]:
    """Every window of every trial plus the trial index of each window."""
    root = dataset_dir("hmp_wrist_adl", options.env)
    signals: list[npt.NDArray[np.float64]] = []
    feats: list[npt.NDArray[np.float64]] = []
    labels: list[int] = []
    groups: list[str] = []
    trials: list[int] = []
    for t, (activity, volunteer, path) in enumerate(trial_index(root)):
        if options.records is not None and volunteer not in options.records:
            continue
        for w in segment_windows(read_trial(path)):
            feats.append(acc_features(w, FS_HZ))
            pad = np.pad(w, ((0, WINDOW - w.shape[0]), (0, 0)), mode="edge")
            signals.append(pad.T / G_MG)
            labels.append(CLASSES.index(activity))
            groups.append(volunteer)
            trials.append(t)
    data = TaskData(
        np.asarray(signals, dtype=np.float32),
        np.asarray(feats, dtype=np.float32),
        np.asarray(labels, dtype=np.int64),
        np.asarray(groups, dtype=np.str_),
    )
    return data, np.asarray(trials, dtype=np.int64)


def load(split: str, options: LoadOptions) -> TaskData:
    """``all``: every window of the 839 HMP trials (groups = volunteer ids)."""
    if split != "all":
        raise DataNotFoundError(f"split {split!r} of task activity", "all")
    return load_windows(options)[0]


def contract() -> InputContract:
    """Input contract: 4 s of 3-axis wrist acceleration at 32 Hz plus its feature vector."""
    return InputContract(
        sampling_rate_hz=FS_HZ,
        window_before=0,
        window_after=WINDOW,
        alignment="window of 128 samples (4 s), step 2 s; no event alignment",
        lead="wrist 3-axis accelerometer, axes x (toward the hand), y (left), z (out of the back of the hand)",
        units="features from acceleration in mg (common.signals.accel.acc_features); waveform in g",
        filter="none",
        normalisation="features standardised inside the model (mean/scale initialisers)",
        resampling=(
            "bring other rates to 32 Hz with common.signals.resample_signal(acc, fs, 32.0, axis=0) "
            "before cutting windows; clip to +-1.5 g to mimic the HMP sensor range"
        ),
        features=tuple(
            FeatureSpec(n, _feature_unit(n), "see common.signals.accel.acc_features")
            for n in ACC_FEATURE_NAMES
        ),
        parameters={"window": WINDOW, "step": STEP, "feature_names": list(ACC_FEATURE_NAMES)},
    )


def _feature_unit(name: str) -> str:
    if name.endswith("jerk"):
        return "g/s"
    if name.endswith("_deg"):
        return "degree"
    if name.endswith("freq_hz"):
        return "Hz"
    if name.endswith("spec_entropy"):
        return "nat"
    if name.startswith(("corr", "band", "mag_acf")):
        return "ratio"
    return {"duration_s": "s"}.get(name, "g")


TASK = Task(
    name="activity",
    classes=CLASSES,
    description="Wrist activity of daily living (14 HMP classes) from 4 s of 3-axis acceleration",
    input_names=("acc", "features"),
    splits={"all": "all 839 HMP trials; evaluate leave-one-volunteer-out"},
    train_split="all",
    test_split="all",
    load=load,
    contract=contract,
    teacher=NetSpec("resnet", (16, 24, 32), 5, 32, dropout=0.3, feature_dim=16),
    student=NetSpec("cnn", (8, 16, 16), 5, 16, dropout=0.2, feature_dim=16),
    train=TrainSpec(epochs=10, batch_size=128, lr=3e-3, balance=0.5),
    data_description=(
        "HMP Dataset for ADL Recognition with Wrist-worn Accelerometer (Bruno et al. 2013, UCI "
        "id 283; research use), 14 activity folders, 16 volunteers"
    ),
    notes="the shipped model is the numpy softmax over features (models.tasks.activity.fit_softmax)",
)


L2 = 1.0  # chosen once on leave-one-volunteer-out (1, 3, 10 within 1 point macro-F1)


def evaluate_lovo(options: LoadOptions, l2: float = L2) -> dict[str, Any]:
    """Leave-one-volunteer-out metrics per window and per trial (mean window probabilities)."""
    data, trials = load_windows(options)
    x = data.features.astype(np.float64)
    probs = np.zeros((len(data), len(CLASSES)))
    for volunteer in np.unique(data.groups):
        test = data.groups == volunteer
        model = fit_softmax(x[~test], data.labels[~test], len(CLASSES), l2=l2)
        probs[test] = predict_proba(model, x[test])
    window = classification_metrics(data.labels, probs.argmax(axis=1), CLASSES)
    uniq = np.unique(trials)
    trial_probs = np.stack([probs[trials == t].mean(axis=0) for t in uniq])
    trial_labels = np.array([data.labels[trials == t][0] for t in uniq], dtype=np.int64)
    trial = classification_metrics(trial_labels, trial_probs.argmax(axis=1), CLASSES)
    return {
        "per_window": window,
        "per_trial": trial,
        "n_volunteers": int(np.unique(data.groups).size),
    }


def train(options: LoadOptions, out_path: Path, seed: int = 0) -> Path:
    """Fit on every volunteer, write the model, its weights JSON and card (LOVO metrics)."""
    _ = seed  # L-BFGS from zeros on a convex loss is deterministic
    data, _trials = load_windows(options)
    metrics = evaluate_lovo(options)
    model = fit_softmax(data.features.astype(np.float64), data.labels, len(CLASSES), l2=L2)
    counts = data.class_counts(len(CLASSES))
    return save_feature_model(
        model,
        out_path,
        task=TASK,
        metrics={"fp32": metrics["per_window"], "fp32_per_trial": metrics["per_trial"]},
        training=TrainingInfo(
            data=TASK.data_description,
            split="all windows; metrics leave-one-volunteer-out",
            seed=seed,
            command="python -m models.tasks.activity --out models/pretrained/activity_softmax.onnx",
            class_counts={c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
            notes=f"softmax regression, L2={L2}, class-balanced",
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m models.tasks.activity --out PATH``: train and write the shipped model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/pretrained/activity_softmax.onnx"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    card = train(LoadOptions(env=dict(os.environ)), args.out, args.seed)
    sys.stdout.write(f"wrote {args.out} and {card}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
