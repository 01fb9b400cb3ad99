"""Record-wise 5-fold cross-validation of rhythm v2 on the CinC 2017 training set.

Protocol (docs/models.md, "Rhythm v2: cross-validation protocol"): the 8,228 recordings get a
fold each with :func:`models.cv.stratified_folds` (stratified by label, seed :data:`CV_SEED`).
For fold k the recipe (``models.rhythm_pipeline.train_models``: teacher -> distilled student ->
fp32 ONNX -> int8) is trained on the other four folds + MIT-BIH DS1 + AFTDB and scores the
recordings of fold k (every window of a recording, probabilities averaged, arg-max). The feature
softmax (the v1 method refit on the same training windows, 4 classes) is scored beside it.
Per-fold predictions go to ``<out>/fold<k>.json``; ``<out>/cv.json`` pools them (per fold and
pooled per-class F1, CinC mean F1, confusion, record-bootstrap intervals) for every model.

``--dev`` runs the development split instead: train on folds 2-4, score fold 1 (fold 0 is never
looked at while choosing settings).

    nice -n 10 python -m models.rhythm_cv --out runs/rhythm_cv            # all five folds
    nice -n 10 python -m models.rhythm_cv --out runs/rhythm_cv --folds 3  # one fold (resumable)
    python -m models.rhythm_cv --out runs/rhythm_cv --restore-card models/pretrained/rhythm.card.json
        # pool the fold files of --out with the folds the card's cv5_* tables already hold
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from common.model_card import load_card
from models.cv import stratified_folds
from models.data.mitdb import DS1
from models.feature_model import fit_softmax, predict_proba
from models.rhythm_cv_report import markdown, restored_folds, summarise
from models.rhythm_data import SHIPPED_BANK, BankSpec, WindowBank
from models.rhythm_metrics import CLASSES
from models.rhythm_pipeline import Recipe, default_recipe, train_models
from models.rhythm_scoring import onnx_window_probs, record_probabilities
from models.rhythm_train import predict_windows
from models.tasks.base import LoadOptions

_LOGGER = logging.getLogger(__name__)

CV_SEED = 2017
FOLDS = 5
DEV_TRAIN, DEV_VALIDATE = (2, 3, 4), (1,)


def record_folds(bank: WindowBank, k: int = FOLDS, seed: int = CV_SEED) -> dict[str, int]:
    """Fold of every recording of a CinC bank (stratified by its label)."""
    full = ~bank.short
    names, first = np.unique(bank.records[full], return_index=True)
    labels = bank.labels[full][first]
    return {
        str(n): int(f)
        for n, f in zip(names, stratified_folds(list(names), labels, k, seed), strict=True)
    }


def softmax_window_probs(
    train: WindowBank, test: WindowBank, idx: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """The feature softmax (L2 = 1) fit on ``train``'s full windows, applied to ``idx``."""
    keep = ~train.short
    model = fit_softmax(
        train.features[keep].astype(np.float64),
        train.labels[keep],
        len(CLASSES),
        l2=1.0,
        balanced=False,
    )
    return predict_proba(model, test.features[idx].astype(np.float64)).astype(np.float32)


def run_split(
    cinc: WindowBank,
    extra: WindowBank,
    folds: dict[str, int],
    train_folds: tuple[int, ...],
    test_folds: tuple[int, ...],
    recipe: Recipe,
    seed: int,
    out: Path,
) -> dict[str, Any]:
    """Train on ``train_folds`` (+ ``extra``), score ``test_folds``; per-record probabilities."""
    fold = np.array([folds[str(r)] for r in cinc.records])
    train = WindowBank.concat([cinc.subset(np.isin(fold, train_folds)), extra])
    test = cinc.subset(np.isin(fold, test_folds))
    started = time.monotonic()
    trained = train_models(train, recipe, seed, out)
    idx = np.arange(len(test), dtype=np.int64)
    window_probs = {
        "teacher_fp32": predict_windows(trained.teacher, test, idx),
        "student_fp32": onnx_window_probs(trained.fp32, test, idx),
        "student_int8": onnx_window_probs(trained.int8, test, idx),
        "softmax_fp32": softmax_window_probs(train, test, idx),
    }
    result: dict[str, Any] = {
        "train_folds": list(train_folds),
        "test_folds": list(test_folds),
        "seed": seed,
    }
    for name, probs in window_probs.items():
        records, rec_probs, labels = record_probabilities(test, probs, idx)
        result[name] = {
            "records": records,
            "labels": labels.tolist(),
            "probs": np.round(rec_probs, 5).tolist(),
        }
    result["seconds"] = trained.seconds | {"total": time.monotonic() - started}
    result["recipe"] = asdict(recipe)
    return result


def _banks(options: LoadOptions, spec: BankSpec, recipe: Recipe) -> tuple[WindowBank, WindowBank]:
    from models.tasks.rhythm import aftdb_bank, cinc_bank, mitdb_bank

    extra_opts = LoadOptions(env=options.env, cache_dir=options.cache_dir)
    mitdb = mitdb_bank(list(DS1), extra_opts, spec, recipe.mitdb_ectopy_as_o)
    return cinc_bank(options, spec), WindowBank.concat([mitdb, aftdb_bank(extra_opts, spec)])


def _bank_json(spec: BankSpec, ectopy_as_o: float | None = None) -> dict[str, Any]:
    """What a fold file records of its inputs and of the MIT-BIH labels."""
    relabel = {} if ectopy_as_o is None else {"mitdb_ectopy_as_o": ectopy_as_o}
    return {"feature_names": list(spec.feature_names), "rr_track": spec.rr_track, **relabel}


def _bank_spec(p_wave: bool, rr_track: bool) -> BankSpec:
    from common.signals.pwave import PWAVE_FEATURES
    from common.signals.rhythm_input import FEATURE_NAMES

    return BankSpec(FEATURE_NAMES + (PWAVE_FEATURES if p_wave else ()), rr_track)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.rhythm_cv --out DIR [--folds 0,1] [--dev] [--epochs N] [--steps N]``."""
    from common.datasets import default_cache_dir

    parser = argparse.ArgumentParser(description="record-wise 5-fold CV of rhythm v2 on CinC 2017")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for fold<k>.json and cv.json"
    )
    parser.add_argument(
        "--folds", help="comma-separated folds to run (default all; done ones are kept)"
    )
    parser.add_argument(
        "--dev", action="store_true", help="development split: train folds 2-4, score fold 1"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs)")
    parser.add_argument("--steps", type=int, help="override the steps per epoch (smoke runs)")
    parser.add_argument("--records", help="comma-separated CinC records (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="record resamples for the intervals"
    )
    parser.add_argument(
        "--p-wave",
        action="store_true",
        help="development: add the three P-wave features (common.signals.pwave) to the input",
    )
    parser.add_argument(
        "--rr-track",
        action="store_true",
        help="development: the RR track (common.signals.rr_track) as a second input channel",
    )
    parser.add_argument(
        "--restore-card",
        type=Path,
        help="pool with the folds a card's cv5_* tables hold (an earlier run's fold files lost)",
    )
    parser.add_argument(
        "--recipe",
        help='JSON changes to the recipe (development runs), e.g. \'{"teacher": {"widths": [32, 48]}, '
        '"train": {"lr": 0.002}, "student_epochs": 20}\'',
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    env = dict(os.environ)
    options = LoadOptions(
        env=env,
        records=args.records.split(",") if args.records else None,
        cache_dir=default_cache_dir(env) / "preprocessed",
    )
    recipe = default_recipe().changed(json.loads(args.recipe) if args.recipe else {})
    recipe = recipe.smaller(args.epochs, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    splits = (
        [(DEV_TRAIN, DEV_VALIDATE, "dev")]
        if args.dev
        else [(tuple(f for f in range(FOLDS) if f != k), (k,), f"fold{k}") for k in range(FOLDS)]
    )
    wanted = None if args.folds is None else {f"fold{int(k)}" for k in args.folds.split(",")}
    done = {int(p.stem.removeprefix("fold")) for p in args.out.glob("fold[0-9].json")}
    spec = _bank_spec(args.p_wave, args.rr_track)
    restored = None
    if args.restore_card is not None:
        if spec != SHIPPED_BANK or recipe.mitdb_ectopy_as_o is not None:
            parser.error(
                "--restore-card pools with the shipped model's folds: no --p-wave/--rr-track/mitdb_ectopy_as_o"
            )
        restored = restored_folds(load_card(args.restore_card).metrics, done)
    held = set(restored["test_folds"]) if restored else set()  # scored already: never rerun
    results = []
    banks: tuple[WindowBank, WindowBank, dict[str, int]] | None = None  # minutes: on first need
    for train_folds, test_folds, name in splits:
        path = args.out / f"{name}.json"
        if held & set(test_folds):
            continue
        if (wanted is None or name in wanted) and not path.is_file():
            if banks is None:
                cinc, extra = _banks(options, spec, recipe)
                banks = (cinc, extra, record_folds(cinc))
            _LOGGER.info("%s: train on folds %s, score %s", name, train_folds, test_folds)
            res = run_split(*banks, train_folds, test_folds, recipe, args.seed, args.out / name)
            res["bank"] = _bank_json(spec, recipe.mitdb_ectopy_as_o)
            path.write_text(json.dumps(res), encoding="utf-8")
        if path.is_file():
            results.append(json.loads(path.read_text()))
            made = results[-1].get("bank", _bank_json(SHIPPED_BANK))  # older files: shipped
            asked = _bank_json(spec, recipe.mitdb_ectopy_as_o)
            if made != asked:  # folds of other inputs must not be pooled
                parser.error(f"{path} was made with inputs {made}; this run asks for "
                             f"{asked}: give another --out")  # fmt: skip
    results += [restored] if restored else []
    scored = {f for r in results for f in r["test_folds"]}
    report = summarise(results, args.bootstrap) | {
        "complete": len(scored) == (1 if args.dev else FOLDS),
        "command": "python -m models.rhythm_cv " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (args.out / ("dev.summary.json" if args.dev else "cv.json")).write_text(
        json.dumps(report, indent=1), encoding="utf-8"
    )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
