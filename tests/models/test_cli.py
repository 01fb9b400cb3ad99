"""`medchain evaluate` / `data list` / `train` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchain.cli import main

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


@pytest.mark.datasets("mitdb")
def test_evaluate_json_and_report(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    model = PRETRAINED / "beat.onnx"
    # Execute
    rc = main(
        [
            "evaluate",
            "--task",
            "beat",
            "--model",
            str(model),
            "--split",
            "ds2",
            "--records",
            "100",
            "--json",
            "--report",
            str(tmp_path / "rep"),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0
    assert out["classes"] == ["N", "S", "V", "F", "Q"]
    assert set(out["per_class"]["S"]) >= {"se", "ppv", "f1", "support"}
    assert out["per_class"]["S"]["support"] == 33
    assert {"macro_f1", "accuracy", "confusion", "jk"} <= set(out)
    assert sum(map(sum, out["confusion"])) == out["n"]
    assert (tmp_path / "rep" / "report.png").stat().st_size > 1000
    assert "Confusion matrix" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/nonexistent/m.onnx"], "model 'm.onnx' not found"),
        (["--model", "BEAT", "--records", "999"], "record(s) ['999'] not found"),
        (["--model", "CORRUPT"], "cannot load ONNX model"),
    ],
)
def test_evaluate_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    argv = [
        {"BEAT": str(PRETRAINED / "beat.onnx"), "CORRUPT": str(corrupt)}.get(a, a) for a in argv
    ]
    # Execute
    rc = main(["evaluate", "--task", "beat", *argv])
    err = capsys.readouterr().err
    # Assert
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.datasets("mitdb")
def test_data_list_json(capsys: pytest.CaptureFixture[str], data_root: Path) -> None:
    rc = main(["data", "list", "--json"])
    listing = json.loads(capsys.readouterr().out)
    assert rc == 0
    found = {d["dataset"]: d["path"] for d in listing["datasets"]}
    assert found["mitdb"] and Path(found["mitdb"]).is_dir()


@pytest.mark.datasets("mitdb")
def test_train_tiny_beat_run(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    # Execute
    rc = main(
        [
            "train",
            "--task",
            "beat",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "run"),
            "--records",
            "119,208",
            "--test-records",
            "100",
            "--epochs",
            "1",
            "--steps",
            "3",
            "--json",
        ]
    )
    metrics = json.loads(capsys.readouterr().out)
    # Assert
    assert rc == 0
    assert set(metrics) >= {"fp32", "int8", "teacher_fp32"}
    card = json.loads((tmp_path / "run" / "beat.card.json").read_text())
    assert card["training"]["command"].startswith("medchain ")
    assert card["input_contract"]["parameters"]["beat_spec"]["sampling_rate_hz"] == 128.0


@pytest.mark.parametrize(
    "flag", [["--epochs", "-1"], ["--epochs", "0"], ["--steps", "-5"], ["--threads", "0"]]
)
def test_train_refuses_numbers_that_train_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    # `--epochs -1` trained nothing and still wrote beat.onnx and a card ("-1 epochs"), exit 0;
    # `--threads 0` ended in torch's RuntimeError traceback after the data was loaded
    rc = main(["train", "--task", "beat", "--out", str(tmp_path / "o"), *flag])
    assert rc == 2 and flag[0] in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_a_bootstrap_below_one_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the rhythm path scored every recording (minutes on CinC) and then failed in numpy
    labels = tmp_path / "REFERENCE.csv"
    labels.write_text("A1,N\n")
    rc = main(["evaluate", "--task", "rhythm", "--records", str(tmp_path), "--labels",
               str(labels), "--bootstrap", "0"])  # fmt: skip
    assert rc == 2 and "--bootstrap must be >= 1" in capsys.readouterr().err
