"""The task contract shared by every task module (pure numpy; no torch here).

A task's loader returns :class:`TaskData`: a waveform tensor ``signal`` of shape
``(N, C, L)`` (float32, already filtered/resampled/normalised exactly as the card's input
contract says), an extra-feature matrix ``features`` of shape ``(N, K)`` (``K`` may be 0),
integer labels and the patient/record id of every example (``groups``), used for patient-wise
validation splits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import MedchainError
from common.model_card import InputContract

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TaskData:
    """Examples of one split.

    Attributes
    ----------
    signal : ndarray, shape (N, C, L), float32
        Model-ready waveform windows.
    features : ndarray, shape (N, K), float32
        Extra features (e.g. RR intervals); ``K = 0`` when the task has none.
    labels : ndarray, shape (N,), int64
        Class index into ``Task.classes``.
    groups : ndarray, shape (N,), str
        Patient / record id of each example.
    """

    signal: npt.NDArray[np.float32]
    features: npt.NDArray[np.float32]
    labels: IntArray
    groups: npt.NDArray[np.str_]

    def __post_init__(self) -> None:
        n = self.signal.shape[0]
        if self.signal.ndim != 3:
            raise ValueError(f"signal must be (N, C, L), got {self.signal.shape}")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features must be (N, K) with N={n}, got {self.features.shape}")
        if self.labels.shape != (n,) or self.groups.shape != (n,):
            raise ValueError("labels and groups must be (N,)")

    def __len__(self) -> int:
        return int(self.signal.shape[0])

    def subset(self, index: npt.NDArray[Any]) -> TaskData:
        """The examples at ``index`` (integer indices or boolean mask)."""
        return TaskData(
            self.signal[index], self.features[index], self.labels[index], self.groups[index]
        )

    def class_counts(self, n_classes: int) -> IntArray:
        """Number of examples per class, shape (n_classes,)."""
        return np.bincount(self.labels, minlength=n_classes).astype(np.int64)


@dataclass(frozen=True)
class LoadOptions:
    """How a loader should work.

    Attributes
    ----------
    env : mapping
        Environment (for ``common.datasets.dataset_dir`` / cache folder).
    records : sequence of str, optional
        Restrict to these records (smoke tests, debugging); ``None`` = the whole split.
    cache_dir : Path, optional
        Where to cache preprocessed arrays (npz); ``None`` disables caching.
    """

    env: Mapping[str, str]
    records: Sequence[str] | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a 1-D CNN (see ``models.nets.build_net``).

    ``kind`` is ``"resnet"`` (teacher) or ``"cnn"`` (compact student). Each stage has
    ``widths[i]`` channels and halves the length; features are concatenated to the flattened
    convolutional output before the embedding layer.
    """

    kind: str
    widths: tuple[int, ...]
    kernel: int
    embedding_dim: int
    dropout: float = 0.1
    feature_dim: int = 16  # the extra features go through Linear(K -> feature_dim)


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings (defaults chosen on a patient-wise DS1 validation split)."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # sampling weight of class c is count_c ** -balance (0 = natural, 1 = fully balanced)
    balance: float = 0.5
    # loss weight of class c is count_c ** -loss_balance, normalised to mean 1
    loss_balance: float = 0.0
    kd_temperature: float = 3.0
    kd_alpha: float = 0.7  # weight of the KL term (1 - alpha on cross-entropy)
    augment: bool = True
    steps_per_epoch: int = 0  # 0 = len(train) / batch_size
    label_smoothing: float = 0.0
    # probability per example of zeroing the auxiliary signal channels (1:) during training, so
    # the net cannot rely on them alone (e.g. an SVEB that matches the template of a patient
    # whose usual beat is itself ectopic must still be caught by its RR features)
    aux_channel_dropout: float = 0.0
    # probability per example of class aux_swap_classes[0] (beat task: S) of replacing its
    # auxiliary channels (1:) by those of a random class-aux_swap_classes[1] example (N) of the
    # batch: teaches that an SVEB can look like the wearer's usual beat (a patient whose usual
    # beat is itself an SVEB, MIT-BIH 232) and must then be called by its RR features
    aux_channel_swap: float = 0.0
    aux_swap_classes: tuple[int, int] = (1, 0)  # (receiving class, donor class)
    # only receivers with min(features[aux_swap_features]) < aux_swap_below (none: all of them);
    # beat task: rr_pre/rr_local and rr_pre/rr_long (4, 6) below 0.8, i.e. premature beats, so
    # the net learns "usual-looking but premature = S" and not "usual-looking and fast = S"
    aux_swap_features: tuple[int, ...] = ()
    aux_swap_below: float = 0.0


class BlindSplitError(MedchainError):
    """A split without labels (a blind challenge test set) was used for training or metrics."""


def require_labels(data: TaskData, task: str, split: str) -> TaskData:
    """``data`` unchanged if every label is a class index; blind splits use label ``-1``.

    Raises
    ------
    BlindSplitError
        If any label is negative: such a split may be predicted, never trained or scored on.
    """
    blind = int(np.sum(data.labels < 0))
    if blind:
        raise BlindSplitError(
            f"split {split!r} of task {task} has {blind} unlabelled (blind) examples: it cannot "
            "be used for training or metrics (use `medchain evaluate --predict-test` for it)"
        )
    return data


def patient_wise_split(
    data: TaskData, seed: int, fraction: float = 0.2
) -> tuple[IntArray, IntArray]:
    """Indices (train, validation) with whole groups (patients) held out.

    Groups are shuffled with ``seed`` and assigned to validation until ``fraction`` of them are
    there; every class present in at least two groups gets one validation group containing it
    first, so rare classes are validated too.
    """
    rng = np.random.default_rng(seed)
    groups = np.unique(data.groups)
    rng.shuffle(groups)
    n_val = max(1, round(fraction * len(groups)))
    val: list[str] = []
    for label in np.unique(data.labels):
        having = [g for g in groups if np.any(data.labels[data.groups == g] == label)]
        if len(having) >= 2 and not set(having) & set(val) and len(val) < n_val:
            val.append(str(having[0]))
    for g in groups:
        if len(val) >= n_val:
            break
        if str(g) not in val:
            val.append(str(g))
    mask = np.isin(data.groups, val)
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


@dataclass(frozen=True)
class Task:
    """Everything the generic pipeline needs about one task.

    Attributes
    ----------
    name : str
        Task id (``beat``, ``ptb``...).
    classes : tuple of str
        Class names in output order.
    description : str
        One line for the card and ``--help``.
    input_names : tuple of str
        ONNX input names ``(signal, features)``; the second is dropped when ``K = 0``.
    splits : mapping
        Split name -> description (e.g. ``ds1`` / ``ds2``).
    train_split, test_split : str
        Splits used by ``medchain train`` and by default in ``evaluate``.
    load : callable
        ``load(split, options) -> TaskData``; raises ``common.errors`` on bad input.
    contract : callable
        ``contract() -> InputContract`` for the card.
    teacher, student : NetSpec
    train : TrainSpec
    data_description : str
        What the data is, for the card (``training.data``).
    validation : callable
        ``validation(data, seed) -> (train_idx, val_idx)``; default patient-wise.
    metric_extras : callable, optional
        ``extras(confusion, classes) -> dict`` added to the metrics (e.g. the jk index).
    template_veto_rms : float, optional
        Threshold of the template veto (``models.template_veto``) that ``medchain train``
        appends, for tasks whose signal channel 1 is the window minus the wearer's running
        template and whose classes include V and Q; None: no veto.
    """

    name: str
    classes: tuple[str, ...]
    description: str
    input_names: tuple[str, str]
    splits: Mapping[str, str]
    train_split: str
    test_split: str
    load: Callable[[str, LoadOptions], TaskData]
    contract: Callable[[], InputContract]
    teacher: NetSpec
    student: NetSpec
    train: TrainSpec
    data_description: str
    validation: Callable[[TaskData, int], tuple[IntArray, IntArray]] = patient_wise_split
    metric_extras: Callable[[IntArray, tuple[str, ...]], dict[str, Any]] | None = None
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    template_veto_rms: float | None = None
