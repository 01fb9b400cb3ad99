"""``medchain train --task rhythm``: teacher -> student -> ONNX -> int8 -> card, reproducibly
(a smoke run: a few CinC recordings, one MIT-BIH test record, two steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.model_card import file_sha256, load_card
from medchain.cli import main
from models.data.cinc2017 import read_reference


@pytest.mark.datasets("cinc2017_training", "mitdb", "aftdb")
def test_train_writes_a_complete_card_and_repeats_exactly(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: two recordings of each class
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    ref = read_reference(data_root / "cinc2017_training")
    picked = [
        r
        for c in ("N", "AF", "O", "noisy")
        for r in [x for x, y in zip(ref.records, ref.labels, strict=True) if y == c][:2]
    ]
    cv = tmp_path / "cv.json"
    cv.write_text(
        json.dumps(
            {"student_int8": {"pooled": {"per_class": {}}, "per_fold": [], "mean_of_folds": {}}}
        )
    )
    argv = [
        "train",
        "--task",
        "rhythm",
        "--records",
        ",".join(picked),
        "--test-records",
        "100",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--threads",
        "1",
        "--seed",
        "0",
    ]
    # Execute
    rc1 = main([*argv, "--out", str(tmp_path / "a"), "--cv-report", str(cv)])
    rc2 = main([*argv, "--out", str(tmp_path / "b"), "--json"])
    evaluations = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rc3 = main([*argv, "--out", str(tmp_path / "c"), "--cv-report", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    # Assert: a loadable card for the int8 file, the same bytes from the same seed
    assert (rc1, rc2, rc3) == (0, 0, 2) and "missing.json" in err
    card = load_card(tmp_path / "a" / "rhythm.card.json")
    assert card.artifact.sha256 == file_sha256(tmp_path / "a" / "rhythm.onnx")
    assert file_sha256(tmp_path / "a" / "rhythm.onnx") == file_sha256(
        tmp_path / "b" / "rhythm.onnx"
    )
    assert card.classes == ("N", "AF", "O", "noisy") and "cv5_student_int8" in card.metrics
    assert set(evaluations) == {"teacher_fp32", "fp32", "int8"}
    assert evaluations["int8"]["n"] == 60 and "by_group" in evaluations["int8"]
    assert card.training.command.startswith("medchain ") and card.training.seed == 0
    # the CV tables of a report go into a card afterwards, nothing else changes
    from models.rhythm_card import main as card_main

    before = load_card(tmp_path / "b" / "rhythm.card.json")
    assert (
        card_main(["--card", str(tmp_path / "b" / "rhythm.card.json"), "--cv-report", str(cv)]) == 0
    )
    after = load_card(tmp_path / "b" / "rhythm.card.json")
    assert "cv5_student_int8" in after.metrics and "cv5_student_int8" not in before.metrics
    assert (
        after.artifact == before.artifact
        and after.metrics["mitdb_ds2_int8"] == before.metrics["mitdb_ds2_int8"]
    )

    # the evaluator (the edge's verdict code on the files) gives the CV path's probabilities
    import shutil

    import numpy as np

    from models.rhythm_eval import evaluate_records
    from models.rhythm_scoring import onnx_window_probs, record_probabilities
    from models.tasks.base import LoadOptions
    from models.tasks.rhythm import cinc_bank

    folder = tmp_path / "recs"
    folder.mkdir()
    for r in picked:
        shutil.copy(data_root / "cinc2017_training" / "training2017" / f"{r}.mat", folder)
    labels = dict(zip(ref.records, ref.labels, strict=True))
    (folder / "labels.csv").write_text("".join(f"{r},{labels[r]}\n" for r in picked))
    model = tmp_path / "a" / "rhythm.onnx"
    report = evaluate_records(folder, folder / "labels.csv", model, bootstrap=10)
    bank = cinc_bank(
        LoadOptions(
            env={"MEDCHAIN_DATA": str(data_root)},
            records=picked,
            cache_dir=tmp_path / "cache" / "preprocessed",
        )
    )
    idx = np.arange(len(bank))
    names, probs, _ = record_probabilities(bank, onnx_window_probs(model, bank, idx), idx)
    by_name = {r["record"]: r["probabilities"] for r in report["records"]}
    for name, p in zip(names, probs, strict=True):
        np.testing.assert_allclose([by_name[name][c] for c in card.classes], p, atol=2e-4)


def test_a_card_from_a_partial_cv_says_which_folds() -> None:
    # Prepare: a report of fold 0 only, and a complete one
    from models.rhythm_card import _cv_metrics

    table = {"pooled": {"cinc_mean_f1": 0.8}, "per_fold": [{}], "mean_of_folds": {}}
    partial = {"folds": [[0]], "complete": False, "student_int8": table}
    whole = {"folds": [[k] for k in range(5)], "complete": True, "student_int8": table}
    # Execute
    got_partial = _cv_metrics(partial)["cv5_student_int8"]
    got_whole = _cv_metrics(whole)["cv5_student_int8"]
    # Assert
    assert got_partial["folds_scored"] == [0]
    assert "INCOMPLETE: only fold(s) 0 of 5" in got_partial["split"]
    assert got_whole["folds_scored"] == [0, 1, 2, 3, 4] and "INCOMPLETE" not in got_whole["split"]
