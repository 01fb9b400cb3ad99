"""``activity`` task: 14 wrist activities of daily living (HMP dataset, Bruno et al. 2013).

Each HMP trial (32 Hz, 6-bit codes 0..63 per axis, g = -1.5 + 3 * code / 63) is cut into 4 s
windows with a 2 s step (a trial shorter than 4 s is one window, edge-padded in ``signal``);
every window gives the waveform (3, 128) in g and the :func:`common.signals.accel.acc_features`
vector. The shipped model is a softmax regression over those features trained in numpy
(``models.feature_model.fit_softmax``, shared with the ``aft`` and ``rhythm`` tasks), exported
to ONNX without torch (``models.feature_model.save_feature_model``), so the edge runs it with onnxruntime or with :class:`common.signals.accel.ActivityClassifier` (pure numpy).
The ``*_MODEL`` folders are not used (they re-cut trials of the same volunteers).
Evaluation is leave-one-volunteer-out, per window and per trial (mean window probabilities).
"""

from __future__ import annotations

import argparse
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
from common.model_card import FeatureSpec, InputContract, TrainingInfo
from common.signals.accel import ACC_FEATURE_NAMES, G_MG, acc_features
from models.feature_model import fit_softmax, predict_proba, save_feature_model
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
    notes="the shipped model is the numpy softmax over features (models.feature_model.fit_softmax)",
    options={"evaluate": evaluate_lovo},
)


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
