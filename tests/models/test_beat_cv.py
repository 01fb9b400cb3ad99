"""DS1 patient-wise cross-validation (models.beat_cv) on synthetic beats, and its bench CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.augment import RecordView
from models.beat_cv import FOLDS, CvConfig, by_record, cross_validate, scores, with_overrides
from models.tasks.base import NetSpec, TaskData, TrainSpec

CLASSES = ("N", "S", "V", "F", "Q")
ROOT = Path(__file__).resolve().parents[2]


def _beats(record: str, view: Any) -> TaskData:
    """Class c beats have a bump of height c at sample 40 (+ noise); RR ratio falls for S."""
    rng = np.random.default_rng(int(record))
    n = 60
    labels = np.array([0] * 40 + [1] * 8 + [2] * 8 + [3] * 2 + [4] * 2, np.int64)
    signal = rng.normal(0, 0.1, (n, 2, 96)).astype(np.float32)
    signal[:, 0, 38:42] += labels[:, None].astype(np.float32)
    if isinstance(view, RecordView) and view.polarity == -1:
        signal = -signal
    feats = np.ones((n, 8), np.float32)
    feats[labels == 1, 4] = 0.6
    return TaskData(signal, feats, labels, np.full(n, record).astype(np.str_))


def _load(records: list[str], view: Any) -> TaskData:
    views = view(records[0]) if callable(view) else [view]
    parts = [_beats(r, v) for r in records for v in views]
    return TaskData(
        np.concatenate([p.signal for p in parts]),
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.groups for p in parts]),
    )


def test_cross_validation_scores_every_condition_and_served_form() -> None:
    config = CvConfig(
        student=NetSpec("cnn", (4, 4), 5, 8),
        train=TrainSpec(epochs=1, batch_size=32, steps_per_epoch=3),
        seed=0,
        veto=0.5,
        veto_grid=(0.3,),
        gate_variants={"ns": {"ns_only": True}},
        views=lambda r: [RecordView(polarity=-1)],
        conditions={"inverted": RecordView(polarity=-1)},
    )
    records = [FOLDS[0][0], FOLDS[1][0], FOLDS[2][0]]
    out = cross_validate(_load, config, CLASSES, records)
    assert set(out) == {"seconds", "clean", "inverted"}
    for cond in ("clean", "inverted"):
        assert set(out[cond]) == {"net", "gate", "gate_ns", "served", "veto_0.3"}
        assert sum(map(sum, out[cond]["served"]["confusion"])) == 3 * 60
    assert out == {**cross_validate(_load, config, CLASSES, records), "seconds": out["seconds"]}


def test_scores_and_per_record_counts() -> None:
    y = np.array([0, 1, 1, 2, 0], np.int64)
    p = np.array([1, 1, 0, 2, 0], np.int64)
    g = np.array(["a", "a", "b", "b", "b"])
    assert by_record(y, p, g, 1) == {"a": [1, 1, 1], "b": [0, 1, 0]}
    s = scores(y, p, g, CLASSES)
    assert s["se_ppv"]["S"] == [0.5, 0.5] and "jk" in s


def test_overrides_turn_lists_into_tuples() -> None:
    spec = with_overrides(TrainSpec(), {"aux_swap_features": [4, 6], "balance": 0.8})
    assert spec.aux_swap_features == (4, 6) and spec.balance == 0.8


@pytest.mark.datasets("mitdb")
def test_cli_prints_one_json_line(data_root: Path, tmp_path: Path) -> None:
    env = {"MEDCHAIN_DATA": str(data_root), "MEDCHAIN_CACHE": str(tmp_path), "PATH": ""}
    argv = [sys.executable, "-m", "models.beat_cv_cli", "--gate", "--veto", "0.5"]
    argv += ["--set", "epochs=1", "--set", "steps_per_epoch=2", "--records", "101,108,109"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["clean"]["served"]["confusion"] and out["veto"] == 0.5
