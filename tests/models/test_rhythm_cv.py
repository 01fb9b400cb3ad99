"""Model selection for rhythm v2: record-wise stratified folds, record bootstrap, CinC score,
and the cross-validation runner on a few real recordings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from models import cv
from models.cv import bootstrap_ci, stratified_folds
from models.rhythm_metrics import CLASSES, cinc_mean_f1, rhythm_metrics


def test_doctests() -> None:
    import doctest

    assert doctest.testmod(cv).failed == 0


def test_folds_spread_every_class_and_do_not_depend_on_the_record_order() -> None:
    # Prepare: the CinC 2017 class mix in small (600 N, 87 AF, 286 O, 29 noisy)
    labels = np.repeat([0, 1, 2, 3], [600, 87, 286, 29])
    names = [f"A{i:05d}" for i in range(labels.size)]
    order = np.random.default_rng(1).permutation(labels.size)
    # Execute
    folds = stratified_folds(names, labels, k=5, seed=7)
    shuffled = stratified_folds([names[i] for i in order], labels[order], k=5, seed=7)
    # Assert: each class within one record of an even share per fold; same folds either order
    for c in range(4):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(shuffled, folds[order])
    assert np.ptp(np.bincount(folds)) <= 1
    assert not np.array_equal(stratified_folds(names, labels, k=5, seed=8), folds)


def test_folds_refuse_repeated_records() -> None:
    with pytest.raises(ValueError, match="unique record"):
        stratified_folds(["a", "a", "b"], [0, 0, 1], k=2)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_records() -> None:
    # Prepare: 80 % correct predictions on 50 and on 5,000 recordings
    rng = np.random.default_rng(0)

    def accuracy(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean(y == p))

    widths = []
    for n in (50, 5000):
        y = rng.integers(0, 3, n)
        p = np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
        # Execute
        lo, hi = bootstrap_ci(accuracy, y, p, n_resamples=400, seed=1)
        # Assert
        assert lo <= accuracy(y, p) <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 4
    assert np.isnan(bootstrap_ci(accuracy, [], [])[0])


def test_cinc_score_is_the_mean_f1_of_n_af_o_without_noisy() -> None:
    # Prepare: N all right, AF half right, O all wrong; noisy perfect (must not count)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    p = np.array([0, 0, 1, 0, 0, 0, 3, 3])
    # Execute
    m = rhythm_metrics(y, p, bootstrap=200)
    # Assert: F1 N = 2*2/(2+5) = 4/7, AF = 2/3, O = 0
    assert m["cinc_mean_f1"] == pytest.approx((4 / 7 + 2 / 3 + 0) / 3)
    assert m["cinc_mean_f1"] == cinc_mean_f1(y, p)
    assert m["per_class"]["noisy"]["f1"] == 1.0 and m["af_f1"] == pytest.approx(2 / 3)
    assert m["confusion"][2] == [2, 0, 0, 0] and m["classes"] == list(CLASSES)
    low, high = m["bootstrap"]["ci"]["cinc_mean_f1"]
    assert low <= m["cinc_mean_f1"] <= high and m["bootstrap"]["unit"] == "recording"


def _smoke_records(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ten recordings of each class, with the data and a fresh cache in the environment."""
    from models.data.cinc2017 import read_reference

    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    ref = read_reference(data_root / "cinc2017_training")
    return [
        r
        for lab in CLASSES
        for r in [x for x, y in zip(ref.records, ref.labels, strict=True) if y == lab][:10]
    ]


@pytest.mark.datasets("cinc2017_training", "mitdb", "aftdb")
def test_cross_validation_runner_writes_per_fold_and_pooled_tables(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 40 recordings of the reference, one step per epoch (a smoke run)
    from models.rhythm_cv import main

    picked = _smoke_records(data_root, tmp_path, monkeypatch)
    # Execute
    rc = main(
        [
            "--out",
            str(tmp_path / "cv"),
            "--epochs",
            "1",
            "--steps",
            "1",
            "--records",
            ",".join(picked),
            "--bootstrap",
            "20",
            "--folds",
            "0,1",
        ]
    )
    # Assert: two folds done and resumable, tables for every model, folds by record
    assert rc == 0 and os.environ["MEDCHAIN_CACHE"].startswith(str(tmp_path))
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert report["complete"] is False and report["folds"] == [[0], [1]]
    for name in ("teacher_fp32", "student_fp32", "student_int8", "softmax_fp32"):
        assert len(report[name]["per_fold"]) == 2
        assert 0.0 <= report[name]["pooled"]["cinc_mean_f1"] <= 1.0
    f0 = json.loads((tmp_path / "cv" / "fold0.json").read_text())
    f1 = json.loads((tmp_path / "cv" / "fold1.json").read_text())
    assert not set(f0["student_int8"]["records"]) & set(f1["student_int8"]["records"])
    assert len(f0["student_int8"]["records"]) + len(f1["student_int8"]["records"]) == 16


def test_folds_restored_from_a_card_pool_with_new_folds_exactly() -> None:
    # Prepare: a card whose cv5 tables hold folds 0-1 (confusion only), and fold 2 scored anew
    from models.rhythm_cv_report import MODELS, restored_folds, summarise

    conf = [[5, 1, 0, 0], [0, 3, 1, 0], [1, 0, 4, 0], [0, 0, 1, 1]]
    row = {"f1_N": 0.9, "f1_AF": 0.8, "f1_O": 0.7, "f1_noisy": 0.5, "cinc_mean_f1": 0.8}
    card = {
        f"cv5_{m}": {"confusion": conf, "per_fold": [row, row], "folds_scored": [0, 1]}
        for m in MODELS
    }
    new_y, new_p = [0, 1, 2, 3, 1], [0, 1, 2, 3, 0]
    probs = np.eye(4)[new_p].tolist()
    fold2 = {"test_folds": [2], "seconds": {}} | {
        m: {"records": list("abcde"), "labels": new_y, "probs": probs} for m in MODELS
    }
    # Execute
    restored = restored_folds(card, skip={2})
    assert restored is not None
    report = summarise([fold2, restored], bootstrap=50)
    # Assert: pooled confusion = the card's + the new fold's; rows and folds in one order
    want = np.asarray(conf)
    for y, p in zip(new_y, new_p, strict=True):
        want[y, p] += 1
    for m in MODELS:
        assert np.array_equal(report[m]["pooled"]["confusion"], want)
        assert report[m]["per_fold"][:2] == [row, row] and len(report[m]["per_fold"]) == 3
    assert report["folds"] == [[0], [1], [2]]
    with pytest.raises(ValueError, match="both in the card"):
        restored_folds(card, skip={1})


def test_restore_card_never_reruns_the_folds_the_card_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a card whose cv5 tables hold folds 0-1; training stubbed (records each fold run)
    from models import rhythm_cv
    from models.rhythm_cv_report import MODELS

    card = json.loads(
        (Path(__file__).resolve().parents[2] / "models/pretrained/rhythm.card.json").read_text()
    )
    for key in [k for k in card["metrics"] if k.startswith("cv5_")]:
        card["metrics"][key] |= {
            "folds_scored": [0, 1],
            "per_fold": card["metrics"][key]["per_fold"][:2],
        }
    (tmp_path / "card.json").write_text(json.dumps(card))
    ran: list[tuple[int, ...]] = []

    def fake_split(*args: object) -> dict[str, object]:
        test_folds = args[4]
        assert isinstance(test_folds, tuple)
        ran.append(test_folds)
        rec = {"records": ["a"], "labels": [0], "probs": [[1.0, 0.0, 0.0, 0.0]]}
        return {"test_folds": list(test_folds), "seconds": {}} | dict.fromkeys(MODELS, rec)

    monkeypatch.setattr(rhythm_cv, "_banks", lambda options, spec, recipe: (None, None))
    monkeypatch.setattr(rhythm_cv, "record_folds", lambda cinc: {})
    monkeypatch.setattr(rhythm_cv, "run_split", fake_split)
    # Execute
    rc = rhythm_cv.main(
        [
            "--out",
            str(tmp_path / "cv"),
            "--restore-card",
            str(tmp_path / "card.json"),
            "--bootstrap",
            "10",
        ]  # fmt: skip
    )
    # Assert: folds 2-4 ran, 0-1 came from the card; the report is complete
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert rc == 0 and ran == [(2,), (3,), (4,)]
    assert report["complete"] is True and report["folds"] == [[0], [1], [2], [3], [4]]


@pytest.mark.datasets("cinc2017_training", "mitdb", "aftdb")
def test_development_run_with_the_p_wave_features(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 40 recordings, one step per epoch; the banks get the three P-wave features
    from common.signals.pwave import PWAVE_FEATURES
    from common.signals.rhythm_input import FEATURE_NAMES
    from models.rhythm_cv import main
    from models.rhythm_data import BankSpec
    from models.tasks.base import LoadOptions
    from models.tasks.rhythm import cinc_bank

    picked = _smoke_records(data_root, tmp_path, monkeypatch)
    argv = ["--out", str(tmp_path / "dev"), "--dev", "--p-wave", "--records", ",".join(picked)]
    # Execute
    rc = main([*argv, "--epochs", "1", "--steps", "1", "--bootstrap", "20"])
    # Assert: the run scored its fold; the cached bank holds 18 features, the first 15 as before
    assert rc == 0
    report = json.loads((tmp_path / "dev" / "dev.summary.json").read_text())
    assert report["complete"] is True and report["folds"] == [[1]]
    options = LoadOptions(env=dict(os.environ), records=picked[:8], cache_dir=tmp_path / "c2")
    bank = cinc_bank(options, BankSpec(FEATURE_NAMES + PWAVE_FEATURES))
    assert bank.features.shape[1] == 18
    np.testing.assert_array_equal(bank.features[:, :15], cinc_bank(options).features)
    # a run asking for other inputs refuses to pool with this fold file
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path / "dev"), "--dev", "--records", ",".join(picked)])
    assert exited.value.code == 2


def test_the_tables_have_a_row_per_fold_the_mean_and_the_pooled_interval() -> None:
    from models.rhythm_cv_report import MODELS, markdown, summarise

    rng = np.random.default_rng(0)
    results = []
    for fold in (0, 1):
        result: dict[str, object] = {"test_folds": [fold], "seconds": {}}
        for name in MODELS:
            y = rng.integers(0, 4, 40)
            probs = np.eye(4)[np.where(rng.random(40) < 0.7, y, rng.integers(0, 4, 40))]
            result[name] = {"records": list(map(str, range(40))), "labels": y.tolist(),
                            "probs": probs.tolist()}  # fmt: skip
        results.append(result)
    lines = markdown(summarise(results, bootstrap=20)).splitlines()
    assert len(lines) == 2 + 4 * len(MODELS)
    teacher = [line.split(" | ")[1] for line in lines if line.startswith("| teacher_fp32")]
    assert teacher == ["0", "1", "mean of folds", "pooled [95 % CI]"]
    assert all(line.count("|") == 8 for line in lines)


def test_a_class_absent_from_the_scored_records_reads_n_a_not_a_crash() -> None:
    from models.rhythm_cv_report import MODELS, markdown, summarise

    # Prepare: a smoke run's fold holds no noisy recording (its F1 is undefined)
    y = np.array([0, 1, 2] * 4)
    result: dict[str, object] = {"test_folds": [1], "seconds": {}}
    for name in MODELS:
        result[name] = {"records": list(map(str, range(12))), "labels": y.tolist(),
                        "probs": np.eye(4)[y].tolist()}  # fmt: skip
    # Execute
    lines = markdown(summarise([result], bootstrap=5)).splitlines()
    # Assert
    pooled = [line for line in lines if line.startswith("| student_int8 | pooled")]
    assert "n/a" in pooled[0] and "**1.000**" in pooled[0]
