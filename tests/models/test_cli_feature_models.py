"""`medchain evaluate` on the feature-model tasks (aft, rhythm): input feeding, each task's own
held-out protocol, blind test-set predictions, and the blind splits never being scored."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from common.errors import CorruptInputError
from medchain.cli import main
from models.feature_model import feature_model_onnx_bytes
from models.predict import onnx_feed
from models.tasks.base import TaskData

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


@pytest.fixture
def env(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _data(k: int) -> TaskData:
    rng = np.random.default_rng(0)
    return TaskData(
        rng.normal(size=(5, 2, 64)).astype(np.float32),
        rng.normal(size=(5, k)).astype(np.float32),
        np.zeros(5, dtype=np.int64),
        np.array(list("abcde")),
    )


def _session(k: int) -> ort.InferenceSession:
    model = {"mean": np.zeros(k), "scale": np.ones(k), "layers": [(np.eye(k, 3), np.zeros(3))]}
    return ort.InferenceSession(feature_model_onnx_bytes(model), providers=["CPUExecutionProvider"])


def test_onnx_feed_gives_features_to_a_features_only_graph() -> None:
    # Prepare
    data = _data(4)
    # Execute
    feed = onnx_feed(_session(4), data)
    # Assert
    assert list(feed) == ["features"]
    assert np.array_equal(feed["features"], data.features)


def test_onnx_feed_rejects_a_feature_model_of_another_width() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(CorruptInputError, match=r"'features' expects shape \['N', 3\]"):
        onnx_feed(_session(3), _data(4))


@pytest.mark.datasets("aftdb")
def test_evaluate_aft_model_and_leave_one_record_out(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    model = PRETRAINED / "aft_softmax.onnx"
    # Execute
    rc = main(["evaluate", "--task", "aft", "--model", str(model), "--json"])
    out = json.loads(capsys.readouterr().out)
    # Assert: the model's own numbers on the 30 labelled records, flagged as its training data
    assert rc == 0
    assert out["classes"] == ["N", "S", "T"] and out["n"] == 30 and out["split"] == "learning"
    assert "training split" in out["warning"]
    # ... and the held-out protocol, every learning record predicted once
    results = out["protocol"]["results"]
    assert "Leave-one-record-out" in out["protocol"]["description"]
    assert results["three_class"]["n"] == 30
    assert sorted(results["records"]) == [f"{c}{i:02d}" for c in "nst" for i in range(1, 11)]
    for event in ("event_a_N_vs_T", "event_b_S_vs_T"):
        assert results[event]["n"] == 20 and 0 <= results[event]["correct"] <= 20


@pytest.mark.datasets("aftdb")
def test_evaluate_aft_markdown_shows_protocol_tables(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    model = PRETRAINED / "aft_softmax.onnx"
    # Execute
    rc = main(["evaluate", "--task", "aft", "--model", str(model), "--records", "n01,n02,t01,t02"])
    out = capsys.readouterr().out
    # Assert
    assert rc == 0
    assert "## aft protocol: Leave-one-record-out" in out and "## three_class" in out
    assert "warning: 'learning' is the task's training split" in out


@pytest.mark.datasets("aftdb")
def test_predict_test_writes_the_challenge_lines(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    out_file = env / "answers" / "aft.txt"
    # Execute: no --model needed, the event models are fit on the learning set
    rc = main(["evaluate", "--task", "aft", "--predict-test", str(out_file)])
    captured = capsys.readouterr()
    # Assert
    lines = out_file.read_text().splitlines()
    assert rc == 0 and captured.out == ""
    assert "50 lines" in captured.err
    assert [ln[:3] for ln in lines] == [f"a{i:02d}" for i in range(1, 31)] + [
        f"b{i:02d}" for i in range(1, 21)
    ]
    assert all(re.fullmatch(r"a\d\d [NT]", ln) for ln in lines[:30])
    assert all(re.fullmatch(r"b\d\d [ST]", ln) for ln in lines[30:])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--task", "aft", "--model", "AFT", "--split", "test-b"],
            "split 'test-b' of task aft has 20 unlabelled (blind) examples",
        ),
        (["--task", "beat", "--predict-test", "-"], "task beat has no blind test-set prediction"),
        (["--task", "aft"], "give --model (and/or --predict-test OUT)"),
    ],
)
@pytest.mark.datasets("aftdb")
def test_evaluate_usage_errors_are_one_line(
    env: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    argv = [str(PRETRAINED / "aft_softmax.onnx") if a == "AFT" else a for a in argv]
    # Execute
    rc = main(["evaluate", *argv])
    err = capsys.readouterr().err
    # Assert
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.datasets("mitdb", "aftdb")
def test_evaluate_rhythm_model_and_protocol(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: two DS2 records with AF (smoke size; the full run is in docs/models.md)
    model = PRETRAINED / "rhythm_softmax.onnx"
    # Execute
    rc = main(
        ["evaluate", "--task", "rhythm", "--model", str(model), "--records", "202,203", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0
    # the v1 softmax's N, AF, O are the first three classes of the rhythm task (v2 adds noisy)
    assert out["classes"] == ["N", "AF", "O", "noisy"] and out["split"] == "ds2"
    assert out["per_class"]["noisy"]["predicted"] == 0
    assert out["per_class"]["AF"]["support"] > 0 and "warning" not in out
    results = out["protocol"]["results"]
    assert set(results) == {"overall", "af_f1", "by_group"}
    assert results["by_group"]["200-series"]["windows"] == out["n"]


@pytest.mark.datasets("mitdb")
def test_no_protocol_flag_skips_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    model = PRETRAINED / "rhythm_softmax.onnx"
    # Execute
    rc = main(
        ["evaluate", "--task", "rhythm", "--model", str(model), "--records", "202", "--json"]
        + ["--no-protocol"]
    )
    out = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0 and "protocol" not in out and out["n"] > 0


@pytest.mark.datasets("hmp_wrist_adl")
def test_evaluate_activity_reports_leave_one_volunteer_out(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: three volunteers keep the refits short
    model = PRETRAINED / "activity_softmax.onnx"
    # Execute
    rc = main(
        ["evaluate", "--task", "activity", "--model", str(model), "--records", "f1,m1,m2"]
        + ["--json"]
    )
    out = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0 and out["split"] == "all" and "training split" in out["warning"]
    results = out["protocol"]["results"]
    assert results["n_volunteers"] == 3
    assert results["per_window"]["n"] == out["n"]
    assert results["per_trial"]["n"] < results["per_window"]["n"]
