"""``ptb`` task: normal vs abnormal (mostly myocardial infarction) PTB beats, Kaggle format.

Data: the Kaggle "ECG Heartbeat Categorization" PTB CSVs (Kachuee et al. 2018): one beat per
row, 187 samples at 125 Hz, amplitude already min-max normalised to [0, 1] over its 10-s
segment, starting at the R peak and zero-padded, then the label (0 normal, 1 abnormal). Only a
100 + 100 row random sample is available here, so the held-out accuracy has a wide confidence
interval (60 test beats: one beat = 1.7 points) and rows of one patient may fall on both sides
(the Kaggle files carry no patient id): an intra-patient, small-sample sanity check, not a
clinical claim.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import InputContract
from models.tasks.base import LoadOptions, NetSpec, Task, TaskData, TrainSpec

_LOGGER = logging.getLogger(__name__)

FILES = (("ptbdb_normal_sample.csv", 0), ("ptbdb_abnormal_sample.csv", 1))
N_SAMPLES = 187
RATE_HZ = 125.0
TEST_FRACTION = 0.3
SPLIT_SEED = 0  # fixed so the test rows never change with the training seed


def read_kaggle_csv(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Rows of a Kaggle heartbeat CSV: ``(n, 187)`` samples and ``(n,)`` integer labels.

    Raises
    ------
    DataNotFoundError
        If the file is missing.
    CorruptInputError
        If it is not a 188-column numeric CSV.
    """
    if not path.is_file():
        raise DataNotFoundError(f"file {path.name!r}", str(path.parent))
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise CorruptInputError(f"{path}: not a numeric CSV ({exc})") from exc
    if table.shape[1] != N_SAMPLES + 1 or not np.all(np.isfinite(table)):
        raise CorruptInputError(
            f"{path}: expected {N_SAMPLES + 1} finite columns, got {table.shape[1]}"
        )
    return table[:, :N_SAMPLES].astype(np.float32), table[:, -1].astype(np.int64)


def _split_mask(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Stratified test mask (``TEST_FRACTION`` of each class, seed ``SPLIT_SEED``)."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        test[rng.choice(idx, size=round(TEST_FRACTION * len(idx)), replace=False)] = True
    return test


def load(split: str, options: LoadOptions) -> TaskData:
    """``train`` (70 %), ``test`` (30 %, stratified, fixed seed) or ``all`` rows."""
    if split not in ("train", "test", "all"):
        raise DataNotFoundError(f"split {split!r} of task ptb", "train, test, all")
    folder = dataset_dir("kaggle_heartbeat_samples", options.env)
    signals, labels, groups = [], [], []
    for name, expected in FILES:
        x, y = read_kaggle_csv(folder / name)
        if np.any(y != expected):
            raise CorruptInputError(f"{folder / name}: labels other than {expected}")
        signals.append(x)
        labels.append(y)
        groups.append(np.array([f"{name.split('_')[1]}-{i}" for i in range(len(y))]))
    x, y, g = np.concatenate(signals), np.concatenate(labels), np.concatenate(groups)
    keep = np.ones(len(y), dtype=bool)
    if split != "all":
        keep = _split_mask(y) == (split == "test")
    return TaskData(
        signal=x[keep][:, None, :].copy(),
        features=np.zeros((int(keep.sum()), 0), dtype=np.float32),
        labels=y[keep],
        groups=g[keep].astype(np.str_),
    )


def contract() -> InputContract:
    """Kaggle / Kachuee 2018 beat format."""
    return InputContract(
        sampling_rate_hz=RATE_HZ,
        window_before=0,
        window_after=N_SAMPLES,
        alignment=(
            "window starts at the R peak and spans 1.2 x the median RR interval of its 10-s "
            "segment, zero-padded to 187 samples (Kachuee et al. 2018)"
        ),
        lead="PTB Diagnostic ECG lead as in the Kaggle files (lead II-like)",
        units="dimensionless (min-max normalised)",
        filter="none beyond the source recording (resampled to 125 Hz)",
        normalisation="min-max to [0, 1] over the 10-s segment the beat was cut from",
        resampling=(
            "resample the 10-s segment to 125 Hz (scipy.signal.resample_poly, "
            "common.signals.resample_signal), normalise to [0, 1], cut from each R peak, pad "
            "with zeros to 187 samples"
        ),
        features=(),
        parameters={"n_samples": N_SAMPLES, "pad_value": 0.0},
    )


TASK = Task(
    name="ptb",
    classes=("normal", "abnormal"),
    description="PTB heartbeat normal vs abnormal (mostly MI), Kaggle 187-sample format",
    input_names=("beat", "features"),
    splits={
        "train": "70 % stratified (seed 0) of the 100 + 100 sample rows",
        "test": "30 % stratified held out (60 rows)",
        "all": "all 200 rows",
    },
    train_split="train",
    test_split="test",
    load=load,
    contract=contract,
    teacher=NetSpec("resnet", (16, 32, 32, 32), 7, 32, dropout=0.3),
    student=NetSpec("cnn", (8, 16, 16, 24), 7, 16, dropout=0.2),
    train=TrainSpec(
        epochs=30,
        batch_size=64,
        lr=3e-3,
        weight_decay=1e-3,
        balance=0.0,
        augment=True,
        steps_per_epoch=10,
    ),
    data_description=(
        "Kaggle 'ECG Heartbeat Categorization' PTB samples (Kachuee et al. 2018; PTB Diagnostic "
        "ECG Database, ODC-By 1.0): 100 normal + 100 abnormal beats"
    ),
    notes="tiny sample (200 beats); beat-level split, patients may overlap train/test",
)
