"""models.tasks: registry and patient-wise validation split."""

from __future__ import annotations

import numpy as np
import pytest

from models.tasks import UnknownTaskError, available_tasks, get_task, patient_wise_split
from models.tasks.base import TaskData


def test_registry_lists_and_loads_beat_and_ptb() -> None:
    assert {"beat", "ptb"} <= set(available_tasks())
    assert get_task("beat").classes == ("N", "S", "V", "F", "Q")
    assert get_task("ptb").input_names[0] == "beat"


def test_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        get_task("nope")


def test_patient_wise_split_keeps_patients_whole_and_validates_rare_classes() -> None:
    # Prepare: 10 patients, class 1 only in patients p0 and p5
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(10)], 20)
    labels = np.zeros(200, dtype=np.int64)
    labels[(groups == "p0") | (groups == "p5")] = 1
    data = TaskData(
        rng.normal(size=(200, 1, 8)).astype(np.float32),
        np.zeros((200, 0), dtype=np.float32),
        labels,
        groups.astype(np.str_),
    )
    # Execute
    train, val = patient_wise_split(data, seed=3)
    # Assert
    assert not set(groups[train]) & set(groups[val])
    assert len(train) + len(val) == 200
    assert 1 in labels[val] and 1 in labels[train]


def test_task_data_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="features"):
        TaskData(
            np.zeros((3, 1, 4), np.float32),
            np.zeros((2, 1), np.float32),
            np.zeros(3, np.int64),
            np.array(["a"] * 3),
        )
