"""The model card of the rhythm v2 student (``rhythm.card.json`` beside ``rhythm.onnx``).

Metrics: ``cv5_<model>`` (pooled out-of-fold record metrics of the 5-fold CV on CinC 2017, with
the per-fold table and the record-bootstrap intervals, for the teacher, the student fp32, the
student int8 and the feature softmax) when a ``models.rhythm_cv`` report is given, and
``mitdb_ds2_<model>`` (MIT-BIH DS2 30 s windows: the MIT-BIH AF F1, with the per-series AF
figures).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common.model_card import (
    Artifact,
    ModelCard,
    TrainingInfo,
    card_path_for,
    file_sha256,
    load_card,
    save_card,
)
from models.cards import QUANTIZATION
from models.rhythm_data import WindowBank
from models.rhythm_export import onnx_io
from models.rhythm_net import count_parameters
from models.rhythm_pipeline import Recipe, Trained
from models.tasks.rhythm import CLASSES, TASK

_LOGGER = logging.getLogger(__name__)

CV_SPLIT = (
    "record-wise 5-fold CV on the 8,228 CinC 2017 recordings (models.cv.stratified_folds, seed "
    "2017); every fold's training set also holds MIT-BIH DS1 and AFTDB windows"
)


def _cv_metrics(cv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's tables as ``cv5_<model>`` metrics; a report of only some folds says which
    (pooled over those folds' recordings: never read as the whole CV)."""
    folds = [f[0] for f in cv.get("folds", [])]
    split = CV_SPLIT
    if not cv.get("complete", len(folds) == 5):
        split += f"; INCOMPLETE: only fold(s) {', '.join(map(str, folds))} of 5 scored"
    out = {}
    for name in ("teacher_fp32", "student_fp32", "student_int8", "softmax_fp32"):
        if name in cv:
            out[f"cv5_{name}"] = {
                **cv[name]["pooled"],
                "per_fold": cv[name]["per_fold"],
                "mean_of_folds": cv[name]["mean_of_folds"],
                "folds_scored": folds,
                "split": split,
            }
    return out


def write_card(
    trained: Trained,
    bank: WindowBank,
    recipe: Recipe,
    evaluations: dict[str, dict[str, Any]],
    cv: dict[str, Any] | None,
    *,
    seed: int,
    command: str,
    elapsed_s: float,
) -> Path:
    """Write ``rhythm.card.json`` for ``trained.int8``; returns its path."""
    sha = file_sha256(trained.int8)
    student = trained.student
    counts = np.bincount(bank.labels[~bank.short], minlength=len(CLASSES))
    metrics = {
        f"mitdb_ds2_{k}": {**m, "split": "MIT-BIH DS2 30 s windows (record-wise held out)"}
        for k, m in evaluations.items()
    }
    if cv is not None:
        metrics = _cv_metrics(cv) | metrics
    notes = (
        f"teacher {count_parameters(trained.teacher)} params ({recipe.teachers} x {recipe.teacher.kind} {recipe.teacher.widths}), "
        f"student {count_parameters(student)} params ({recipe.student.kind} {recipe.student.widths}), "
        f"kernel {recipe.student.kernel}; {recipe.train.epochs} teacher / {recipe.student_epochs} student "
        f"epochs, batch {recipe.train.batch_size}, lr {recipe.train.lr}, loss weights count^-{recipe.train.loss_balance}, "
        f"KD T={recipe.train.kd_temperature} alpha={recipe.train.kd_alpha}, short windows {recipe.short_share}; "
        f"trained in {elapsed_s:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in trained.seconds.items())}); "
        "decision: arg-max of the mean window probabilities; " + TASK.notes
    )
    card = ModelCard(
        task=TASK.name,
        classes=CLASSES,
        description=TASK.description,
        input_contract=TASK.contract(),
        onnx=onnx_io(student),
        head=None,
        training=TrainingInfo(
            data=TASK.data_description,
            split="all 8,228 CinC 2017 recordings + MIT-BIH DS1 + AFTDB; metrics: "
            + CV_SPLIT
            + "; MIT-BIH DS2 windows",
            seed=seed,
            command=command,
            class_counts={c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
            notes=notes,
        ),
        metrics=metrics,
        artifact=Artifact(
            file=trained.int8.name,
            size_bytes=trained.int8.stat().st_size,
            sha256=sha,
            quantization=QUANTIZATION,
        ),
        version=f"rhythm-v2-{sha[:12]}",
    )
    path = card_path_for(trained.int8)
    save_card(card, path)
    return path


def add_cv(card_path: Path, cv: dict[str, Any]) -> Path:
    """Put the tables of a ``models.rhythm_cv`` report into an existing card (the model, its
    sha256 and every other metric unchanged): for a shipped model trained while its
    cross-validation ran."""
    card = load_card(card_path)
    metrics = {k: v for k, v in card.metrics.items() if not k.startswith("cv5_")}
    save_card(replace(card, metrics=_cv_metrics(cv) | metrics), card_path)
    return card_path


def main(argv: list[str] | None = None) -> int:
    """``python -m models.rhythm_card --card CARD --cv-report CV_JSON``."""
    parser = argparse.ArgumentParser(description="add 5-fold CV tables to a rhythm model card")
    parser.add_argument("--card", type=Path, required=True, help="rhythm.card.json")
    parser.add_argument("--cv-report", type=Path, required=True, help="cv.json of models.rhythm_cv")
    args = parser.parse_args(argv)
    print(add_cv(args.card, json.loads(args.cv_report.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
