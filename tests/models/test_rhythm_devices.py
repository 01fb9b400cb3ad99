"""CinC 2017 recordings as devices: one recording per device, the validation fold held out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.federated import NpzExamples
from models.rhythm_cv import record_folds
from models.rhythm_data import WindowBank
from models.rhythm_devices import (
    device_arrays,
    federated_split,
    reference_folds,
    write_device_npz,
)
from models.tasks.base import LoadOptions

LABELS = ("N", "A", "O", "~")


def _bank(lengths: dict[str, list[int]], labels: dict[str, int]) -> WindowBank:
    """Windows of the given lengths per record (signal = record index + 1), plus one short."""
    rows = [(r, n, False) for r, ns in lengths.items() for n in ns]
    rows += [(r, 5, True) for r in lengths]
    sig = np.concatenate([np.full(n, i + 1, np.float32) for i, (_, n, _) in enumerate(rows)])
    offsets = np.concatenate([[0], np.cumsum([n for _, n, _ in rows])])
    return WindowBank(
        sig, offsets.astype(np.int64), np.arange(len(rows) * 2, dtype=np.float32).reshape(-1, 2),
        np.array([labels[r] for r, _, _ in rows]), np.array([r for r, _, _ in rows]),
        np.array([s for _, _, s in rows]), np.zeros(len(rows), np.int64),
    )  # fmt: skip


def test_a_device_holds_its_full_windows_padded_with_their_lengths(tmp_path: Path) -> None:
    # Prepare: record a has windows of 30 and 20 samples, b one of 10
    bank = _bank({"a": [30, 20], "b": [10]}, {"a": 1, "b": 2})
    # Execute
    counts = write_device_npz(bank, ["a", "b"], tmp_path)
    a = NpzExamples(tmp_path / "cinc-a.npz").labelled_examples(100)
    rows = device_arrays(bank, np.array([1]))
    # Assert: short windows are not a device's examples; padding is zeros past each length
    assert counts == {"cinc-a": 2, "cinc-b": 1}
    assert a.inputs["ecg"].shape == (2, 1, 30) and a.labels.tolist() == [1, 1]
    assert a.inputs["lengths"].tolist() == [30, 20]
    assert (a.inputs["ecg"][1, 0, 20:] == 0).all() and (a.inputs["ecg"][1, 0, :20] == 2).all()
    assert rows["ecg"].shape == (1, 1, 20) and rows["features"].tolist() == [[2.0, 3.0]]
    with pytest.raises(KeyError):
        write_device_npz(bank, ["missing"], tmp_path)


def test_the_validation_fold_never_holds_a_device() -> None:
    # Prepare: 100 recordings in 5 folds
    folds = {f"r{i:03d}": i % 5 for i in range(100)}
    # Execute
    devices, held = federated_split(folds, 2, None, seed=0)
    some, few = federated_split(folds, 2, 30, seed=0, held_max=7)
    again, _ = federated_split(folds, 2, 30, seed=0, held_max=7)
    # Assert
    assert len(devices) == 80 and len(held) == 20 and not set(devices) & set(held)
    assert len(some) == 30 and set(some) <= set(devices) and some == again
    assert len(few) == 7 and set(few) <= set(held)
    with pytest.raises(ValueError, match="81 of 80"):
        federated_split(folds, 2, 81, seed=0)
    with pytest.raises(ValueError, match="no recording"):
        federated_split(folds, 7, None, seed=0)


def test_folds_from_the_reference_file_are_the_cvs_folds(tmp_path: Path) -> None:
    # Prepare: a reference of 40 recordings (shuffled order) and a bank of the same labels
    rng = np.random.default_rng(3)
    names = [f"A{i:05d}" for i in rng.permutation(40)]
    labels = {n: int(rng.integers(0, 4)) for n in names}
    folder = tmp_path / "cinc2017_training"
    folder.mkdir()
    (folder / "REFERENCE-v3.csv").write_text("".join(f"{n},{LABELS[labels[n]]}\n" for n in names))
    bank = _bank({n: [10] for n in names}, labels)
    # Execute
    from_reference = reference_folds(LoadOptions(env={"MEDCHAIN_DATA": str(tmp_path)}))
    # Assert
    assert from_reference == record_folds(bank)
