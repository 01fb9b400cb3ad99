"""Rhythm task: MIT-BIH rhythm labels, the shipped cards (complete, naming only code that
exists, the contract the code feeds), and the v1 softmax still flagging irregular rhythm."""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from common.model_card import file_sha256, load_card, validate_card
from common.signals.accel import FeatureClassifier
from common.signals.peaks import ecg_findpeaks
from common.signals.rhythm import rhythm_window_features
from models import rhythm_softmax
from models.data import mitdb_rhythm
from models.data.mitdb import aami_beats
from models.tasks import get_task, rhythm
from models.tasks.base import LoadOptions
from tests.common.signals.synthetic import synthetic_ecg

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"
DOTTED = re.compile(r"\b((?:common|models|edge_agent|firmware_bridge)(?:\.\w+)+)")


@pytest.mark.parametrize(
    ("aux", "label"), [("(N\x00", 0), ("(AFIB", 1), ("(AFL\x00", 2), ("(VT", 2), ("(SBR", 2)]
)
def test_rhythm_annotation_mapping(aux: str, label: int) -> None:
    assert mitdb_rhythm.rhythm_of(aux) == label


def _record(rhythm_of_samples: list[int], beats: list[tuple[int, int]]) -> mitdb_rhythm.MitdbRhythm:
    samples, labels = aami_beats([b for b, _ in beats], [s for _, s in beats], 1000)
    n = len(rhythm_of_samples)
    return mitdb_rhythm.MitdbRhythm(
        np.zeros(n), 100.0, np.asarray(rhythm_of_samples, dtype=np.int64), samples, labels
    )


def test_a_window_takes_its_majority_rhythm() -> None:
    rec = _record([0] * 40 + [1] * 60, [])
    assert mitdb_rhythm.window_class(rec, 0, 100) == 1
    assert mitdb_rhythm.window_class(rec, 0, 50) == 0
    assert mitdb_rhythm.window_class(rec, 0, 50, ectopy_as_o=0.1) == 0  # no beats: stays N


def test_sinus_with_frequent_ectopy_becomes_other_only_when_asked() -> None:
    # Setup: ten beats of a sinus window, one V (10 %) and one "+" rhythm note (not a beat)
    beats = [(k * 10, "N") for k in range(9)] + [(95, "V"), (96, "+")]
    rec = _record([0] * 100, beats)
    # Assert: the share counts beats only; at or above the threshold the window is O
    assert mitdb_rhythm.window_class(rec, 0, 100) == 0
    assert mitdb_rhythm.window_class(rec, 0, 100, ectopy_as_o=0.1) == 2
    assert mitdb_rhythm.window_class(rec, 0, 100, ectopy_as_o=0.11) == 0
    assert mitdb_rhythm.window_class(rec, 0, 90, ectopy_as_o=0.1) == 0  # the V lies outside
    af = _record([1] * 100, beats)
    assert mitdb_rhythm.window_class(af, 0, 100, ectopy_as_o=0.1) == 1  # only sinus is relabelled


def test_aami_beats_sorts_drops_duplicates_and_out_of_range() -> None:
    samples, labels = aami_beats([30, 10, 10, 2000, -1, 20], ["A", "N", "V", "N", "N", "+"], 1000)
    assert samples.tolist() == [10, 30] and labels.tolist() == [0, 1]
    empty = aami_beats([], [], 1000)
    assert empty[0].size == 0 and empty[1].size == 0


@pytest.mark.datasets("mitdb")
def test_real_record_windows_carry_af_labels(data_root: Path, tmp_path: Path) -> None:
    # Execute: record 202 starts in sinus rhythm and has AF/AFL later
    options = LoadOptions(env={**os.environ, "MEDCHAIN_DATA": str(data_root)}, cache_dir=tmp_path)
    data = rhythm.load("ds2", LoadOptions(options.env, records=["202"], cache_dir=tmp_path))
    # Assert
    assert get_task("rhythm") is rhythm.TASK
    assert data.signal.shape[1:] == (1, 3840) and len(data) == 60 and data.features.shape[1] == 15
    assert data.labels[0] == 0 and np.sum(data.labels == 1) >= 15
    af, sinus = data.features[data.labels == 1], data.features[data.labels == 0]
    cv = rhythm.contract().parameters["feature_names"].index("rr_cv")
    assert np.median(af[:, cv]) > 2 * np.median(sinus[:, cv])
    assert (tmp_path / "rhythm_v2").is_dir()  # cached outside the repository


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.mark.parametrize("card", ["rhythm_softmax.card.json", "rhythm.card.json"])
def test_shipped_rhythm_cards_name_only_code_that_exists(card: str) -> None:
    # Prepare: every dotted name of our packages in the card's input contract
    raw = json.loads((PRETRAINED / card).read_text())
    names = set(DOTTED.findall(json.dumps(raw["input_contract"])))
    # Assert
    assert names, "the contract names the functions that feed the model"
    assert [n for n in names if not _resolves(n)] == []


def test_shipped_softmax_card_holds_the_contract_of_the_code() -> None:
    card = load_card(PRETRAINED / "rhythm_softmax.card.json")
    assert card.input_contract == rhythm_softmax.contract()
    assert card.artifact.sha256 == file_sha256(PRETRAINED / "rhythm_softmax.onnx")


def test_shipped_v2_card_is_complete() -> None:
    # Prepare
    raw = json.loads((PRETRAINED / "rhythm.card.json").read_text())
    card = load_card(PRETRAINED / "rhythm.card.json")
    # Assert: complete, the code's contract, the file it describes, every metric it promises
    assert validate_card(raw) == []
    assert card.classes == ("N", "AF", "O", "noisy")
    assert card.input_contract == rhythm.contract()
    assert card.artifact.sha256 == file_sha256(PRETRAINED / "rhythm.onnx")
    assert card.artifact.size_bytes == (PRETRAINED / "rhythm.onnx").stat().st_size
    assert [i.name for i in card.onnx.inputs] == ["ecg", "features"]
    for name in ("cv5_student_fp32", "cv5_student_int8", "cv5_teacher_fp32", "mitdb_ds2_int8"):
        assert set(card.metrics[name]["per_class"]) == set(card.classes), name
    cv = card.metrics["cv5_student_int8"]
    assert cv["folds_scored"] and len(cv["per_fold"]) == len(cv["folds_scored"])
    assert (len(cv["folds_scored"]) == 5) == ("INCOMPLETE" not in cv["split"])
    assert "medchain train --task rhythm --seed 0" in card.training.command


def test_shipped_softmax_flags_irregular_rhythm_as_af() -> None:
    # Prepare
    clf = FeatureClassifier.from_dict(json.loads((PRETRAINED / "rhythm_softmax.json").read_text()))
    probs = []
    for jitter in (0.02, 0.25):
        x, _ = synthetic_ecg(128.0, 30.0, hr_bpm=85.0, seed=11, rr_jitter=jitter, wander_uv=30.0)
        # Execute
        probs.append(
            clf.predict_proba(rhythm_window_features(x, 128.0, ecg_findpeaks(x, 128.0)))[0]
        )
    # Assert
    assert probs[0].argmax() == 0 and probs[1][1] > probs[0][1]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--evaluate"], {"set": "ds2"}),
        (["--cv"], {"set": "cv"}),
        (["--evaluate", "--cv"], {"evaluate": {"set": "ds2"}, "cv": {"set": "cv"}}),
    ],
)
def test_v1_cli_prints_one_json_object(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected: dict[str, object],
) -> None:
    # Prepare: the v1 metrics stubbed (the data path is tested above); the registry's
    # ``bench.results record`` needs exactly one JSON object on stdout
    monkeypatch.setattr(rhythm_softmax, "evaluate_ds2", lambda options: {"set": "ds2"})
    monkeypatch.setattr(rhythm_softmax, "evaluate_cv", lambda options: {"set": "cv"})
    # Execute
    assert rhythm.main(flags) == 0
    # Assert
    assert json.loads(capsys.readouterr().out) == expected
