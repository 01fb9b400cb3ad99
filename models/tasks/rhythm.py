"""``rhythm`` task (v2): N (sinus) / AF / O (other rhythm) / noisy for any single-lead ECG of
9 s or more, at any rate and either polarity.

Input: :func:`common.signals.rhythm_input.prepare_rhythm_input` of the window (128 Hz,
band-passed, polarity by the QRS, scaled by the QRS amplitude, plus 15 RR-irregularity and
atrial features; see :func:`contract`). Data (``models.rhythm_data``): the CinC 2017 training
set (8,228 AliveCor recordings, 300 Hz), MIT-BIH rhythm annotations (``models.data.mitdb_rhythm``: ``(N`` -> N,
``(AFIB`` -> AF, anything else incl. ``(AFL`` -> O; 30 s windows of lead 0, majority rhythm; DS1
for training, DS2 only for the MIT-BIH AF F1) and the 80 AFTDB records (AF). MIT-BIH and AFTDB
have no noisy class.

Model selection: record-wise 5-fold CV on the CinC recordings (``models.rhythm_cv``, protocol in
docs/models.md). ``medchain train --task rhythm`` runs ``models.rhythm_pipeline``;
``medchain evaluate --task rhythm --records DIR --labels CSV`` scores any folder of recordings
(``models.rhythm_eval``). The v1 feature softmax lives on in ``models.rhythm_softmax``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from common.datasets import dataset_dir
from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import FeatureSpec, InputContract
from common.signals import rhythm_input as ri
from models import rhythm_softmax
from models.data import cinc2017
from models.data.mitdb import ALL_RECORDS, DS1, DS2
from models.data.mitdb_rhythm import read_mitdb, window_class
from models.rhythm_data import (
    SHIPPED_BANK,
    BankBuilder,
    BankSpec,
    WindowBank,
    add_recording,
    cached_bank,
    spec_key,
)
from models.tasks.base import LoadOptions, NetSpec, Task, TaskData, TrainSpec

_LOGGER = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("N", "AF", "O", "noisy")
CINC_CLASSES: tuple[str, ...] = ("N", "AF", "O")  # the challenge's score: mean F1 of these
WINDOW = round(ri.WINDOW_S * ri.INPUT_FS_HZ)


def mitdb_bank(
    records: list[str],
    options: LoadOptions,
    spec: BankSpec = SHIPPED_BANK,
    ectopy_as_o: float | None = None,
) -> WindowBank:
    """Non-overlapping 30 s windows of lead 0 with their class (``window_class``;
    ``mitdb/NAME``)."""

    def build() -> WindowBank:
        folder, builder = dataset_dir("mitdb", options.env), BankBuilder(spec)
        for name in records:
            rec = read_mitdb(folder, name)
            step = round(ri.WINDOW_S * rec.fs)
            for start in range(0, rec.x_uv.size - step + 1, step):
                label = window_class(rec, start, start + step, ectopy_as_o)
                builder.add(rec.x_uv[start : start + step], rec.fs, label, f"mitdb/{name}")
        return builder.build()

    relabel = {} if ectopy_as_o is None else {"ectopy_as_o": ectopy_as_o}  # shipped key unchanged
    key = spec_key("mitdb", {"records": records, **relabel}, spec)
    return cached_bank(options.cache_dir, key, build)


def aftdb_bank(options: LoadOptions, spec: BankSpec = SHIPPED_BANK) -> WindowBank:
    """Two 30 s windows of lead 0 of each AFTDB learning/test record, all AF (``aftdb/NAME``)."""
    import wfdb

    def build() -> WindowBank:
        builder = BankBuilder(spec)
        for hea in sorted(dataset_dir("aftdb", options.env).glob("*/*.hea")):
            try:
                rec = wfdb.rdrecord(str(hea.with_suffix("")), channels=[0])
            except Exception as exc:  # wfdb raises assorted errors on corrupt files
                raise CorruptInputError(f"cannot read AFTDB record {hea}: {exc}") from exc
            if rec.p_signal is None:
                raise CorruptInputError(f"record {hea} has no physical signal")
            x, fs = np.asarray(rec.p_signal[:, 0]) * 1000.0, float(rec.fs)
            step = round(ri.WINDOW_S * fs)
            for start in range(0, x.size - step + 1, step):
                builder.add(x[start : start + step], fs, 1, f"aftdb/{hea.stem}")
        return builder.build()

    return cached_bank(options.cache_dir, spec_key("aftdb", None, spec), build)


def cinc_bank(options: LoadOptions, spec: BankSpec = SHIPPED_BANK) -> WindowBank:
    """Windows of the CinC 2017 recordings (``models.rhythm_data.add_recording``)."""
    folder = dataset_dir("cinc2017_training", options.env)
    ref = cinc2017.read_reference(folder)
    keep = set(options.records) if options.records else None
    pairs = [
        (r, lab)
        for r, lab in zip(ref.records, ref.labels, strict=True)
        if keep is None or r in keep
    ]
    if keep is not None and len(pairs) != len(keep):
        missing = sorted(keep - {r for r, _ in pairs})
        raise DataNotFoundError(f"CinC 2017 records {missing[:5]}", str(folder))

    def build() -> WindowBank:
        builder = BankBuilder(spec)
        for k, (record, label) in enumerate(pairs):
            add_recording(
                builder,
                cinc2017.read_record(folder, record),
                cinc2017.FS_HZ,
                CLASSES.index(label),
                record,
            )
            if k % 1000 == 999:
                _LOGGER.info("cinc2017: %d of %d recordings preprocessed", k + 1, len(pairs))
        return builder.build()

    key = spec_key("cinc2017", {"records": [r for r, _ in pairs]}, spec)
    return cached_bank(options.cache_dir, key, build)


def bank_task_data(bank: WindowBank) -> TaskData:
    """A bank of 30 s windows as fixed-length ``TaskData`` (``signal`` (N, 1, 3840))."""
    lengths = bank.lengths()
    if len(bank) and not np.all(lengths == WINDOW):
        raise ValueError(
            f"TaskData needs {WINDOW}-sample windows, got {sorted(set(lengths.tolist()))}"
        )
    return TaskData(
        bank.signal.reshape(len(bank), 1, WINDOW),
        bank.features.astype(np.float32),
        bank.labels.astype(np.int64),
        np.asarray([r.removeprefix("mitdb/") for r in bank.records], dtype=np.str_),
    )


def load(split: str, options: LoadOptions) -> TaskData:
    """``ds1`` (MIT-BIH DS1 + AFTDB), ``ds2``, ``mitdb`` (all 48 records) or ``aftdb``."""
    if split == "ds1":
        return bank_task_data(
            WindowBank.concat(
                [mitdb_bank(list(options.records or DS1), options), aftdb_bank(options)]
            )
        )
    if split in ("ds2", "mitdb"):
        default = DS2 if split == "ds2" else ALL_RECORDS
        return bank_task_data(mitdb_bank(list(options.records or default), options))
    if split == "aftdb":
        return bank_task_data(aftdb_bank(options))
    raise DataNotFoundError(f"split {split!r} of task rhythm", "ds1, ds2, mitdb, aftdb")


def contract() -> InputContract:
    """The v2 input contract (everything a device needs to feed the model)."""
    unit = rhythm_softmax.feature_unit
    return InputContract(
        sampling_rate_hz=ri.INPUT_FS_HZ,
        window_before=0,
        window_after=WINDOW,
        alignment=(
            f"one recording or window of {ri.MIN_S:g}-{ri.WINDOW_S:g} s as a whole (ONNX length axis "
            f"dynamic); longer recordings: windows of {ri.WINDOW_S:g} s every {ri.HOP_S:g} s (the last "
            "ending at the end, common.signals.rhythm_input.window_starts), probabilities averaged"
        ),
        lead="one ECG lead, any (trained on AliveCor lead I-like, MIT-BIH lead 0, AFTDB lead 0)",
        units="µV in; the signal input is dimensionless (a typical QRS = 1)",
        filter=(
            f"after resampling: Butterworth band-pass {ri.BAND_HZ[0]:g}-{ri.BAND_HZ[1]:g} Hz, order 2, "
            "zero-phase (common.signals.spectral.sosfiltfilt); R peaks from "
            "common.signals.peaks.ecg_findpeaks on the unfiltered 128 Hz window"
        ),
        normalisation=(
            "polarity: times the sign of the median band-passed value at the R peaks; scale: divided "
            f"by the median |value| there (3 SD with < {ri.MIN_PEAKS} peaks); clipped to "
            f"+-{ri.CLIP:g}; features standardised inside the model"
        ),
        resampling=(
            "common.signals.resample_signal(x, fs, 128.0) (polyphase; 300->128 = 32/75, 360->128 = "
            "16/45); all steps: common.signals.rhythm_input.prepare_rhythm_input(x_uv, fs)"
        ),
        features=tuple(
            FeatureSpec(
                n, unit(n), "common.signals.rhythm.rhythm_window_features of the 128 Hz window"
            )
            for n in ri.FEATURE_NAMES
        ),
        parameters={
            "window_s": ri.WINDOW_S,
            "hop_s": ri.HOP_S,
            "min_s": ri.MIN_S,
            "clip": ri.CLIP,
            "band_hz": list(ri.BAND_HZ),
            "feature_names": list(ri.FEATURE_NAMES),
            "preprocess": "common.signals.rhythm_input.prepare_rhythm_input",
            "quality_flags": list(ri.QUALITY_FLAGS),
        },
    )


def _train(
    request: Any, env: dict[str, str], cache_dir: Path | None, cv_report: Path | None
) -> dict[str, Any]:
    from models.rhythm_pipeline import train_rhythm

    return train_rhythm(request, env, cache_dir, cv_report)


TASK = Task(
    name="rhythm",
    classes=CLASSES,
    description="Rhythm of a 9-60 s single-lead ECG: N (sinus), AF, O (other rhythm), noisy",
    input_names=("ecg", "features"),
    splits={
        "ds1": "MIT-BIH DS1 30 s windows + AFTDB AF windows (training)",
        "ds2": "MIT-BIH DS2 30 s windows (record-wise held out: the MIT-BIH AF F1)",
        "mitdb": "all 48 MIT-BIH records",
        "aftdb": "AFTDB records, 30 s AF windows",
    },
    train_split="ds1",
    test_split="ds2",
    load=load,
    contract=contract,
    # frozen 2026-12-06 after the development runs (docs/models.md): 7 stages, stem /4 then /64
    teacher=NetSpec("resnet", (32, 32, 48, 64, 64, 96, 128), 5, 64, dropout=0.3, feature_dim=32),
    student=NetSpec("cnn", (16, 16, 24, 32, 32, 48, 64), 5, 32, dropout=0.2, feature_dim=16),
    train=TrainSpec(
        epochs=30, batch_size=64, lr=3e-3, balance=0.0, loss_balance=0.5, label_smoothing=0.05
    ),
    data_description=(
        "PhysioNet/CinC Challenge 2017 training set (8,228 AliveCor recordings, ODC-By 1.0) + "
        "MIT-BIH Arrhythmia Database DS1 rhythm annotations + AF Termination Challenge Database "
        "(PhysioNet, ODC-By 1.0)"
    ),
    notes="AFL is in O (regular ventricular response); noisy = CinC '~'",
    options={"evaluate": rhythm_softmax.evaluate_ds2, "train": _train},
)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.tasks.rhythm [--evaluate] [--cv] [--out PATH]`` (the v1 softmax)."""
    parser = argparse.ArgumentParser(description="rhythm: the v1 feature softmax on MIT-BIH")
    parser.add_argument("--evaluate", action="store_true", help="DS1(+AFTDB) -> DS2 metrics (JSON)")
    parser.add_argument(
        "--cv",
        action="store_true",
        help="record-wise 4-fold CV metrics (JSON; with --evaluate one object, keys evaluate, cv)",
    )
    parser.add_argument("--out", type=Path, help="train the softmax and write it here")
    args = parser.parse_args(argv)
    options = LoadOptions(env=dict(os.environ))
    results = {}  # one JSON object: both under their flag's name when both are asked for
    if args.evaluate:
        results["evaluate"] = rhythm_softmax.evaluate_ds2(options)
    if args.cv:
        results["cv"] = rhythm_softmax.evaluate_cv(options)
    if results:
        out = next(iter(results.values())) if len(results) == 1 else results
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    if args.out:
        # stderr: stdout holds only the JSON (the registry records exactly one object)
        sys.stderr.write(f"wrote {rhythm_softmax.train(TASK, options, args.out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
