"""CinC 2017 recordings as the devices of a federated rhythm simulation.

Each recording is one user's device (one AliveCor recording, one label: as non-IID as a fleet
gets). A device holds the full windows of its recording (:func:`device_arrays`: the windows a
device would score, zero-padded to 30 s with their ``lengths``, so one batch holds them); the
server holds a held-out fold of the record-wise CV (:func:`federated_split`, the folds of
``models.rhythm_cv``) for its per-round validation, and MIT-BIH DS1 + AFTDB windows for int8
calibration (:func:`server_windows`). No recording is both a device and in the validation fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from models.data.mitdb import DS1
from models.rhythm_data import WindowBank
from models.tasks.base import LoadOptions

DEVICE_PREFIX = "cinc-"


def device_arrays(
    bank: WindowBank, rows: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.float32] | npt.NDArray[np.int64]]:
    """One device's examples: ``ecg`` (n, C, Lmax) zero-padded (C = ``bank.channels``),
    ``features`` (n, K), ``lengths`` (n,) valid samples, ``labels`` (n,) for the full windows
    ``rows`` of a bank."""
    lengths = bank.lengths()[rows]
    ecg = np.zeros((rows.size, bank.channels, int(lengths.max())), dtype=np.float32)
    for k, i in enumerate(rows):
        w = bank.inputs(int(i))
        ecg[k, :, : w.shape[1]] = w
    return {
        "ecg": ecg,
        "features": bank.features[rows].astype(np.float32),
        "lengths": lengths.astype(np.float32),  # inputs travel as float32 arrays
        "labels": bank.labels[rows].astype(np.int64),
    }


def write_device_npz(
    bank: WindowBank, records: Sequence[str], folder: Path, *, pooled: bool = False
) -> dict[str, int]:
    """``cinc-<record>.npz`` (:func:`device_arrays`) per recording; returns windows per device.

    With ``pooled`` one device ``cinc-pooled`` holds every recording's windows: the centralised
    baseline trained by the same engine, trainer and settings as the federated run.

    Raises
    ------
    KeyError
        A recording with no full window in the bank.
    """
    folder.mkdir(parents=True, exist_ok=True)
    full = np.flatnonzero(~bank.short)
    by_record: dict[str, list[int]] = {}
    for i in full:
        by_record.setdefault(str(bank.records[i]), []).append(int(i))
    groups = {rec: np.asarray(by_record[rec], dtype=np.int64) for rec in records}
    if pooled:
        groups = {"pooled": np.concatenate(list(groups.values()))}
    counts = {}
    for name, rows in groups.items():
        arrays = device_arrays(bank, rows)
        np.savez(folder / f"{DEVICE_PREFIX}{name}.npz", allow_pickle=False, **arrays)
        counts[f"{DEVICE_PREFIX}{name}"] = int(rows.size)
    return counts


def federated_split(
    folds: Mapping[str, int],
    eval_fold: int,
    clients: int | None,
    seed: int,
    held_max: int | None = None,
) -> tuple[list[str], list[str]]:
    """(device recordings, validation recordings), each sorted: the fold ``eval_fold`` held out
    (``held_max`` of it drawn at random when given: quick runs), and ``clients`` of the other
    recordings drawn at random (all when None)."""
    held = _draw(sorted(r for r, f in folds.items() if f == eval_fold), held_max, seed + 1)
    if not held:
        raise ValueError(f"fold {eval_fold} holds no recording")
    pool = _draw(sorted(r for r, f in folds.items() if f != eval_fold), clients, seed)
    return pool, held


def _draw(names: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or not names:
        return names
    if not 0 < n <= len(names):
        raise ValueError(f"asked for {n} of {len(names)} recordings")
    pick = np.random.default_rng(seed).choice(len(names), size=n, replace=False)
    return sorted(names[int(i)] for i in pick)


def reference_folds(options: LoadOptions) -> dict[str, int]:
    """The rhythm CV's fold of every CinC recording from the reference file alone (what
    ``models.rhythm_cv.record_folds`` gives on the whole bank, without preprocessing it)."""
    from models.cv import stratified_folds
    from models.data.cinc2017 import read_reference
    from models.rhythm_cv import CV_SEED, FOLDS
    from models.tasks.rhythm import CLASSES

    ref = read_reference(dataset_dir("cinc2017_training", options.env))
    pairs = sorted(zip(ref.records, ref.labels, strict=True))
    names = [r for r, _ in pairs]
    labels = np.array([CLASSES.index(lab) for _, lab in pairs], dtype=np.int64)
    return dict(
        zip(names, (int(f) for f in stratified_folds(names, labels, FOLDS, CV_SEED)), strict=True)
    )


def server_windows(options: LoadOptions) -> WindowBank:
    """The server's own windows for int8 calibration: MIT-BIH DS1 and AFTDB (30 s)."""
    from models.tasks.rhythm import aftdb_bank, mitdb_bank

    return WindowBank.concat([mitdb_bank(list(DS1), options), aftdb_bank(options)])


def cinc_windows(records: Sequence[str], options: LoadOptions) -> WindowBank:
    """The CinC 2017 bank of ``records`` only (preprocessed once, then cached)."""
    from models.tasks.rhythm import cinc_bank

    return cinc_bank(dataclasses.replace(options, records=list(records)))
