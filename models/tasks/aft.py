"""``aft`` task: spontaneous termination of atrial fibrillation (PhysioNet/CinC Challenge 2004).

Each AFTDB record is one minute of 2-lead ECG at 128 Hz; learning-set classes come from the
record name: ``n`` = non-terminating AF, ``s`` = terminates one minute after the record, ``t`` =
terminates immediately after it. Test sets A (N vs T, 30 records) and B (S vs T, 20 records) are
blind.

Features per record (:func:`record_features`): on each lead, QRST cancellation by average beat
subtraction around the R peaks (the database's own ``.qrs`` annotations, unaudited machine
annotations shipped with the challenge data; ``common.signals.peaks.ecg_findpeaks`` when they
are missing), then the median of the dominant atrial frequency (DAF, Hz) over 10 s windows with
a 2.5 s step (:mod:`common.signals.rhythm`). A lower DAF goes with imminent termination.

The shipped model is a 3-class softmax regression (numpy, ``models.feature_model.fit_softmax``,
ONNX + card). The challenge events use binary softmax models fit on the records of their two
classes (event A: N vs T, event B: S vs T). Evaluation is leave-one-record-out on the 30
learning records (the test answers are not available).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import FeatureSpec, InputContract, TrainingInfo
from common.signals.rhythm import atrial_spectrum_features, qrst_cancel
from models.feature_model import fit_softmax, predict_proba, save_feature_model
from models.metrics import classification_metrics
from models.tasks.base import LoadOptions, NetSpec, Task, TaskData, TrainSpec

_LOGGER = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("N", "S", "T")
FS_HZ = 128.0
N_SAMPLES = 7680
SPLITS = {"learning": "learning-set", "test-a": "test-set-a", "test-b": "test-set-b"}
FEATURES: tuple[tuple[str, str, str], ...] = (
    (
        "daf_lead0_hz",
        "Hz",
        "median DAF of lead 0 over 10 s windows (step 2.5 s) after QRST cancellation",
    ),
    (
        "daf_lead1_hz",
        "Hz",
        "median DAF of lead 1 over 10 s windows (step 2.5 s) after QRST cancellation",
    ),
)
# Chosen among 7 small candidate sets (DAF, concentration, HR, RR CV) on the same LOO, so the
# LOO figures are slightly optimistic; the DAF-only set is also the one physiology suggests.
L2 = 1.0


def _label_of(name: str) -> int:
    return CLASSES.index(name[0].upper()) if name[0] in "nst" else -1


def read_record(folder: Path, name: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Both leads in µV, shape (7680, 2), and the R peaks (``.qrs`` or detected)."""
    import wfdb

    if not (folder / f"{name}.hea").is_file():
        raise DataNotFoundError(f"AFTDB record {name!r}", str(folder))
    try:
        rec = wfdb.rdrecord(str(folder / name))
    except Exception as exc:  # wfdb raises assorted errors on corrupt files
        raise CorruptInputError(f"AFTDB record {name}: {exc}") from exc
    if rec.fs != FS_HZ or rec.p_signal is None or rec.p_signal.shape[1] != 2:
        raise CorruptInputError(f"AFTDB record {name}: expected 2 leads at 128 Hz")
    x = np.asarray(rec.p_signal, dtype=np.float64) * 1000.0
    if (folder / f"{name}.qrs").is_file():
        peaks = np.asarray(wfdb.rdann(str(folder / name), "qrs").sample, dtype=np.int64)
    else:
        from common.signals.peaks import ecg_findpeaks

        peaks = ecg_findpeaks(x[:, 0], FS_HZ)
    return x, peaks


def record_features(
    ecg_uv: npt.NDArray[np.float64], r_peaks: npt.NDArray[np.int64], fs: float = FS_HZ
) -> npt.NDArray[np.float64]:
    """The :data:`FEATURES` of one record: ``ecg_uv`` shape (n, 2), R peaks at ``fs``."""
    out: list[float] = []
    win, step = round(10 * fs), round(2.5 * fs)
    for lead in range(2):
        residual = qrst_cancel(ecg_uv[:, lead], fs, r_peaks)
        dafs = [
            atrial_spectrum_features(residual[s : s + win], fs)[0]
            for s in range(0, max(residual.size - win, 0) + 1, step)
        ]
        out.append(float(np.median(dafs)))
    return np.array(out)


def load(split: str, options: LoadOptions) -> TaskData:
    """``learning`` (labels N/S/T from the names) or the blind ``test-a`` / ``test-b`` (labels -1)."""
    if split not in SPLITS:
        raise DataNotFoundError(f"split {split!r} of task aft", ", ".join(SPLITS))
    folder = dataset_dir("aftdb", options.env) / SPLITS[split]
    names = sorted(p.stem for p in folder.glob("*.hea"))
    if options.records is not None:
        names = [n for n in names if n in options.records]
    if not names:
        raise DataNotFoundError(f"AFTDB {split} records", str(folder))
    signals, feats = [], []
    for name in names:
        x, peaks = read_record(folder, name)
        signals.append(x[:N_SAMPLES].T)
        feats.append(record_features(x, peaks))
    return TaskData(
        np.asarray(signals, dtype=np.float32),
        np.asarray(feats, dtype=np.float32),
        np.array([_label_of(n) for n in names], dtype=np.int64),
        np.asarray(names, dtype=np.str_),
    )


EVENTS: dict[str, tuple[int, int]] = {"event_a_N_vs_T": (0, 2), "event_b_S_vs_T": (1, 2)}


def _fit_pair(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], pair: tuple[int, int]
) -> dict[str, npt.NDArray[np.float64]]:
    """Binary softmax on the records of the two classes of one challenge event."""
    m = np.isin(y, pair)
    return fit_softmax(x[m], (y[m] == pair[1]).astype(np.int64), 2, l2=L2)


def _predict_pair(
    model: dict[str, npt.NDArray[np.float64]], x: npt.NDArray[np.float64], pair: tuple[int, int]
) -> npt.NDArray[np.int64]:
    return np.where(predict_proba(model, x)[:, 1] >= 0.5, pair[1], pair[0]).astype(np.int64)


def evaluate_loo(options: LoadOptions) -> dict[str, Any]:
    """Leave-one-record-out on the learning set: 3-class metrics and event A / B counts."""
    data = load("learning", options)
    x = data.features.astype(np.float64)
    probs = np.zeros((len(data), len(CLASSES)))
    for i in range(len(data)):
        train = np.arange(len(data)) != i
        model = fit_softmax(x[train], data.labels[train], len(CLASSES), l2=L2)
        probs[i] = predict_proba(model, x[i : i + 1])[0]
    y = data.labels
    res: dict[str, Any] = {"three_class": classification_metrics(y, probs.argmax(axis=1), CLASSES)}
    for event, pair in EVENTS.items():
        idx = np.flatnonzero(np.isin(y, pair))
        correct = 0
        for i in idx.tolist():
            train = idx[idx != i]
            model = _fit_pair(x[train], y[train], pair)
            correct += int(_predict_pair(model, x[i : i + 1], pair)[0] == y[i])
        res[event] = {"correct": correct, "n": int(idx.size)}
    res["records"] = {
        str(g): CLASSES[int(p.argmax())] for g, p in zip(data.groups, probs, strict=True)
    }
    return res


def predict_test(options: LoadOptions) -> list[str]:
    """``aNN N|T`` and ``bNN S|T`` lines from a model fit on the whole learning set."""
    learn = load("learning", options)
    lx = learn.features.astype(np.float64)
    lines: list[str] = []
    for split, pair in (("test-a", EVENTS["event_a_N_vs_T"]), ("test-b", EVENTS["event_b_S_vs_T"])):
        data = load(split, options)
        model = _fit_pair(lx, learn.labels, pair)
        decision = _predict_pair(model, data.features.astype(np.float64), pair)
        lines += [f"{g} {CLASSES[int(d)]}" for g, d in zip(data.groups, decision, strict=True)]
    return lines


def contract() -> InputContract:
    """Whole 1-min 2-lead record at 128 Hz; the model input is the feature vector."""
    return InputContract(
        sampling_rate_hz=FS_HZ,
        window_before=0,
        window_after=N_SAMPLES,
        alignment="the whole 60 s record (AF termination is predicted for its end)",
        lead="2 leads as in AFTDB (Holter; lead 1 carries most atrial activity)",
        units="µV",
        filter="0.5-40 Hz Butterworth (zero-phase) inside qrst_cancel; Welch PSD 3-12 Hz",
        normalisation="features standardised inside the model",
        resampling="resample other rates to 128 Hz with common.signals.resample_signal first",
        features=tuple(FeatureSpec(*f) for f in FEATURES),
        parameters={"feature_fn": "models.tasks.aft.record_features", "l2": L2},
    )


TASK = Task(
    name="aft",
    classes=CLASSES,
    description="AF termination: N (non-terminating), S (ends in 1 min), T (ends immediately)",
    input_names=("ecg", "features"),
    splits={
        "learning": "30 labelled records (10 N, 10 S, 10 T)",
        "test-a": "blind, 30 records, N vs T",
        "test-b": "blind, 20 records, S vs T",
    },
    train_split="learning",
    test_split="learning",
    load=load,
    contract=contract,
    teacher=NetSpec("resnet", (16, 24, 32), 7, 32, dropout=0.3, feature_dim=8),
    student=NetSpec("cnn", (8, 16, 16), 7, 16, dropout=0.2, feature_dim=8),
    train=TrainSpec(epochs=20, batch_size=8, lr=1e-3, balance=0.0, augment=False),
    data_description="AF Termination Challenge Database v1.0.0 (PhysioNet aftdb, ODC-By 1.0)",
    notes="30 training records: a CNN cannot be trained honestly; the shipped model is a feature softmax",
    options={"evaluate": evaluate_loo, "predict_test": predict_test},
)


def train(options: LoadOptions, out_path: Path, seed: int = 0) -> Path:
    """Fit on the learning set, write ONNX + weights JSON + card (LOO metrics)."""
    data = load("learning", options)
    res = evaluate_loo(options)
    model = fit_softmax(data.features.astype(np.float64), data.labels, len(CLASSES), l2=L2)
    metrics = {
        "fp32": {
            **res["three_class"],
            "event_a": res["event_a_N_vs_T"],
            "event_b": res["event_b_S_vs_T"],
        }
    }
    return save_feature_model(
        model,
        out_path,
        task=TASK,
        metrics=metrics,
        training=TrainingInfo(
            data=TASK.data_description,
            split="learning set; metrics leave-one-record-out",
            seed=seed,
            command="python -m models.tasks.aft --out models/pretrained/aft_softmax.onnx",
            class_counts=dict.fromkeys(CLASSES, 10),
            notes=f"softmax regression over {len(FEATURES)} features, L2={L2}",
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m models.tasks.aft [--loo] [--predict-test] [--out PATH]``."""
    import json

    parser = argparse.ArgumentParser(description="AF termination (aft) task")
    parser.add_argument(
        "--out", type=Path, help="train on the learning set and write the model here"
    )
    parser.add_argument(
        "--loo", action="store_true", help="print leave-one-record-out metrics (JSON)"
    )
    parser.add_argument(
        "--predict-test", action="store_true", help="print aNN/bNN prediction lines"
    )
    args = parser.parse_args(argv)
    options = LoadOptions(env=dict(os.environ))
    if args.loo:
        sys.stdout.write(json.dumps(evaluate_loo(options), indent=2) + "\n")
    if args.predict_test:
        sys.stdout.write("\n".join(predict_test(options)) + "\n")
    if args.out:
        sys.stdout.write(f"wrote {train(options, args.out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
