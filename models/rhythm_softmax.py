"""Rhythm v1: the feature softmax on 30 s MIT-BIH windows (N, AF, O), kept beside model v2.

Data: every MIT-BIH Arrhythmia record (lead 0) resampled to 128 Hz, R peaks detected on the
whole record with ``common.signals.peaks.ecg_findpeaks``, cut into non-overlapping 30 s windows
labelled with their majority rhythm (``models.data.mitdb_rhythm.read_mitdb``); plus the 80 AFTDB
one-minute records (two AF windows each) for training. Model input: the 15
``common.signals.rhythm.RHYTHM_FEATURES`` of a window (``rhythm_window_features``).

Evaluation is record-wise only: train on DS1 (+ AFTDB), test on DS2 (:func:`evaluate_ds2`,
the MIT-BIH AF F1 the v2 model must not fall below), and a record-wise 4-fold CV over all 48
records; AF Se/+P/F1 reported per record group (100-series records contain no AF).
``python -m models.tasks.rhythm --evaluate --cv --out PATH`` runs these.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import CorruptInputError
from common.model_card import FeatureSpec, InputContract, TrainingInfo
from common.signals.peaks import ecg_findpeaks
from common.signals.resample import resample_signal
from common.signals.rhythm import RHYTHM_FEATURES, RHYTHM_RATE_HZ, rhythm_window_features
from models.data.mitdb import ALL_RECORDS, DS1, DS2
from models.feature_model import FeatureModel, fit_softmax, predict_proba, save_feature_model
from models.metrics import classification_metrics
from models.tasks.base import LoadOptions, Task

_LOGGER = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("N", "AF", "O")
FS_HZ = RHYTHM_RATE_HZ
WINDOW_S = 30.0
WINDOW = int(FS_HZ * WINDOW_S)
L2 = 1.0
FeatureSet = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.str_]]


def fit(x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> FeatureModel:
    """The v1 model: softmax regression (L2 = 1, unweighted classes) over the features.

    Chosen by the mean AF F1 of the two record-wise protocols (DS2 held out, 4-fold CV):
    softmax 0.81 / 0.77 against a 32-32 ReLU MLP 0.87 / 0.65 and class-balanced variants.
    """
    return fit_softmax(x, y, len(CLASSES), l2=L2, balanced=False)


def _window_features(
    x128: npt.NDArray[np.float64], peaks: npt.NDArray[np.int64]
) -> list[npt.NDArray[np.float64]]:
    feats = []
    for start in range(0, x128.size - WINDOW + 1, WINDOW):
        p = peaks[(peaks >= start) & (peaks < start + WINDOW)] - start
        feats.append(rhythm_window_features(x128[start : start + WINDOW], FS_HZ, p))
    return feats


def mitdb_features(records: list[str], options: LoadOptions) -> FeatureSet:
    """Features, majority labels (N 0, AF 1, O 2) and record names of MIT-BIH 30 s windows."""
    from models.data.mitdb_rhythm import read_mitdb, window_class

    folder = dataset_dir("mitdb", options.env)
    feats, labels, groups = [], [], []
    for name in records:
        rec = read_mitdb(folder, name)
        x128 = resample_signal(rec.x_uv, rec.fs, FS_HZ)
        f = _window_features(x128, ecg_findpeaks(x128, FS_HZ))
        step = round(WINDOW_S * rec.fs)
        labels += [window_class(rec, k * step, (k + 1) * step) for k in range(len(f))]
        feats += f
        groups += [name] * len(f)
    return _stack(feats, labels, groups)


def aftdb_features(options: LoadOptions) -> FeatureSet:
    """Features of two 30 s AF windows (lead 0) of each of the 80 AFTDB records."""
    import wfdb

    feats, groups = [], []
    for hea in sorted(dataset_dir("aftdb", options.env).glob("*/*.hea")):
        try:
            rec = wfdb.rdrecord(str(hea.with_suffix("")), channels=[0])
        except Exception as exc:  # wfdb raises assorted errors on corrupt files
            raise CorruptInputError(f"cannot read AFTDB record {hea}: {exc}") from exc
        if rec.p_signal is None:
            raise CorruptInputError(f"record {hea} has no physical signal")
        x = resample_signal(np.asarray(rec.p_signal[:, 0]) * 1000.0, float(rec.fs), FS_HZ)
        f = _window_features(x, ecg_findpeaks(x, FS_HZ))
        feats += f
        groups += [f"aftdb/{hea.stem}"] * len(f)
    return _stack(feats, [1] * len(feats), groups)


def _stack(feats: list[Any], labels: list[int], groups: list[str]) -> FeatureSet:
    return (
        np.asarray(feats, dtype=np.float64).reshape(len(feats), len(RHYTHM_FEATURES)),
        np.asarray(labels, dtype=np.int64),
        np.asarray(groups, dtype=np.str_),
    )


def _af_by_group(
    y: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], groups: npt.NDArray[np.str_]
) -> dict[str, Any]:
    """AF Se/+P/F1 and window counts per MIT-BIH record group (100-series / 200-series)."""
    out: dict[str, Any] = {}
    for series in ("1", "2"):
        m = np.char.startswith(groups.astype(str), series)
        tp = int(np.sum((y[m] == 1) & (pred[m] == 1)))
        fp = int(np.sum((y[m] != 1) & (pred[m] == 1)))
        fn = int(np.sum((y[m] == 1) & (pred[m] != 1)))
        out[f"{series}00-series"] = {
            "af_se": tp / (tp + fn) if tp + fn else None,
            "af_ppv": tp / (tp + fp) if tp + fp else None,
            "af_f1": 2 * tp / (2 * tp + fp + fn) if tp + fn else None,
            "af_windows": tp + fn,
            "false_af_windows": fp,
            "windows": int(m.sum()),
        }
    return out


def report(
    y: npt.NDArray[np.int64],
    pred: npt.NDArray[np.int64],
    groups: npt.NDArray[np.str_],
    classes: tuple[str, ...] = CLASSES,
) -> dict[str, Any]:
    """Per-class metrics, AF F1 and the per-group AF figures of window predictions."""
    metrics = classification_metrics(y, pred, classes)
    return {
        "overall": metrics,
        "af_f1": metrics["per_class"]["AF"]["f1"],
        "by_group": _af_by_group(y, pred, groups),
    }


def _train_set(options: LoadOptions) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    xm, ym, _ = mitdb_features(list(DS1), options)
    xa, ya, _ = aftdb_features(options)
    return np.concatenate([xm, xa]), np.concatenate([ym, ya])


def evaluate_ds2(options: LoadOptions) -> dict[str, Any]:
    """Train on DS1 + AFTDB, test on DS2 (record-wise held out)."""
    x, y = _train_set(options)
    xt, yt, gt = mitdb_features(list(options.records or DS2), options)
    pred = predict_proba(fit(x, y), xt).argmax(axis=1)
    return report(yt, pred.astype(np.int64), gt)


def evaluate_cv(options: LoadOptions, folds: int = 4) -> dict[str, Any]:
    """Record-wise ``folds``-fold CV over all 48 MIT-BIH records (AFTDB always in training)."""
    xm, ym, gm = mitdb_features(list(options.records or ALL_RECORDS), options)
    xa, ya, _ = aftdb_features(options)
    af_recs = sorted({str(g) for g, lab in zip(gm, ym, strict=True) if lab == 1})
    order = af_recs + [r for r in sorted(set(gm.tolist())) if r not in af_recs]
    fold_of = {r: i % folds for i, r in enumerate(order)}
    fold = np.array([fold_of[str(g)] for g in gm])
    pred = np.zeros(len(ym), dtype=np.int64)
    for k in range(folds):
        tr = fold != k
        model = fit(np.concatenate([xm[tr], xa]), np.concatenate([ym[tr], ya]))
        pred[~tr] = predict_proba(model, xm[~tr]).argmax(axis=1)
    return report(ym, pred, gm)


def contract() -> InputContract:
    """30 s of one ECG lead -> the 15 RR-irregularity + atrial features (fully described)."""
    return InputContract(
        sampling_rate_hz=FS_HZ,
        window_before=0,
        window_after=WINDOW,
        alignment="non-overlapping 30 s windows (3840 samples at 128 Hz); no beat alignment",
        lead="any single ECG lead (trained on MIT-BIH lead 0, MLII/V5, and AFTDB lead 0)",
        units="µV",
        filter="none before detection (the detector filters); 0.5-40 Hz zero-phase in qrst_cancel",
        normalisation="features standardised inside the model (mean/scale initialisers)",
        resampling=(
            "resample the device signal to 128 Hz with common.signals.resample_signal(x, fs, 128.0) "
            "(polyphase: 360->128 = 16/45, 130->128 = 64/65, 250->128 = 64/125), detect R peaks at "
            "128 Hz with common.signals.peaks.ecg_findpeaks, then "
            "common.signals.rhythm.rhythm_window_features(window, 128.0, peaks_in_window) (it also "
            "accepts the device-rate window and its R peaks and resamples internally)"
        ),
        features=tuple(
            FeatureSpec(n, feature_unit(n), "see common.signals.rhythm") for n in RHYTHM_FEATURES
        ),
        parameters={"window_s": WINDOW_S, "feature_names": list(RHYTHM_FEATURES)},
    )


def feature_unit(name: str) -> str:
    """Unit of one of the 15 rhythm features."""
    return {"hr_bpm": "bpm", "daf_hz": "Hz", "atrial_log_power": "log10 µV²"}.get(name, "ratio")


def train(task: Task, options: LoadOptions, out_path: Path, seed: int = 0) -> Path:
    """Fit on DS1 + AFTDB, write ONNX + weights JSON + card with DS2 and CV metrics."""
    x, y = _train_set(options)
    held_out, cv = evaluate_ds2(options), evaluate_cv(options)
    counts = np.bincount(y, minlength=len(CLASSES))
    v1 = replace(
        task,
        classes=CLASSES,
        contract=contract,
        description="Rhythm of a 30 s single-lead window: N (sinus), AF, O (other)",
    )
    return save_feature_model(
        fit(x, y),
        out_path,
        task=v1,
        metrics={
            "fp32": {**held_out["overall"], "by_group": held_out["by_group"]},
            "fp32_cv4_records": {**cv["overall"], "by_group": cv["by_group"]},
        },
        training=TrainingInfo(
            data=task.data_description,
            split="train DS1 + AFTDB; test DS2 (record-wise); also 4-fold record-wise CV",
            seed=seed,
            command="python -m models.tasks.rhythm --out models/pretrained/rhythm_softmax.onnx",
            class_counts={c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
            notes=f"softmax regression over {len(RHYTHM_FEATURES)} features, L2={L2}",
        ),
    )
