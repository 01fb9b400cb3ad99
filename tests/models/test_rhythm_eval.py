"""``medchain evaluate --task rhythm --records DIR --labels CSV``: any folder, any rate, any
format; bad input is a flag or one clear error line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from medchain.cli import main
from models.rhythm_records import read_labels
from tests.edge_agent.helpers import synthetic_ecg

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"
KEYS = {
    "schema", "task", "model", "records_dir", "labels", "classes", "scored_classes", "n_records",
    "cinc_mean_f1", "af_f1", "accuracy", "per_class", "confusion", "bootstrap", "quality", "records",
}  # fmt: skip


def _mat(path: Path, x_uv: np.ndarray) -> None:
    savemat(str(path), {"val": np.round(x_uv[None, :]).astype(np.int16)}, format="4")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    import wfdb

    d = tmp_path / "recs"
    d.mkdir()
    rng = np.random.default_rng(0)
    x, _ = synthetic_ecg([0.8] * 40, 300.0)
    _mat(d / "A01.mat", x[: 30 * 300])  # CinC style, 300 Hz, µV = val
    af, _ = synthetic_ecg(list(rng.uniform(0.45, 1.1, 40)), 500.0)
    wfdb.wrsamp(
        "A02",
        fs=500,
        units=["mV"],
        sig_name=["I"],
        p_signal=af[: 25 * 500, None] / 1000,
        fmt=["16"],
        write_dir=str(d),
    )
    y, _ = synthetic_ecg([0.75] * 25, 250.0)
    t = np.arange(y.size) / 250.0
    np.savetxt(
        d / "A03.csv",
        np.column_stack([t, y]),
        delimiter=",",
        header="time,ecg",
        comments="",
        fmt="%.5f",
    )
    _mat(d / "A04.mat", x[: 8 * 300])  # too short
    _mat(d / "A05.mat", np.full(20 * 300, 37.0))  # flat line
    (d / "REFERENCE.csv").write_text("A01,N\nA02,A\nA03,N\nA04,N\nA05,~\n")
    return d


def _evaluate(folder: Path, *extra: str) -> int:
    """``medchain evaluate --task rhythm`` on ``folder`` with its ``REFERENCE.csv`` (or the
    labels file given in ``extra``)."""
    labels = [] if "--labels" in extra else ["--labels", str(folder / "REFERENCE.csv")]
    return main(["evaluate", "--task", "rhythm", "--records", str(folder), *labels, *extra])


def test_labels_accept_cinc_codes_aliases_and_a_header(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "labels.csv"
    path.write_text(
        "record,label\nA1,N\nA2,A\r\nA3,afib,extra\n\nA4,other\nA5,~\n", encoding="utf-8"
    )
    # Execute / Assert
    assert read_labels(path) == [
        ("A1", "N"),
        ("A2", "AF"),
        ("A3", "AF"),
        ("A4", "O"),
        ("A5", "noisy"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A1,N\nA2,X\n", "labels.csv:2: unknown label 'X' for 'A2'"),
        ("A1,N\nA1,O\n", "labels.csv:2: record 'A1' listed twice"),
        ("A1\n", "labels.csv:1: expected 'record,label'"),
        ("", "no 'record,label' rows"),
    ],
)
def test_bad_labels_are_one_line_naming_the_line(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    (tmp_path / "labels.csv").write_text(text)
    # Execute
    rc = _evaluate(tmp_path, "--labels", str(tmp_path / "labels.csv"))
    err = capsys.readouterr().err
    # Assert
    assert rc == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_a_mixed_folder_reports_the_documented_json(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    model = PRETRAINED / "rhythm.onnx"
    # Execute
    rc = _evaluate(folder, "--model", str(model), "--json", "--bootstrap", "50")
    report = json.loads(capsys.readouterr().out)
    # Assert: the schema, every record with its rate, the bad ones flagged and called noisy
    assert rc == 0 and set(report) == KEYS and report["schema"] == "medchain.evaluate.rhythm/1"
    assert report["n_records"] == 5 and report["classes"] == ["N", "AF", "O", "noisy"]
    recs = {r["record"]: r for r in report["records"]}
    assert [recs[n]["fs_hz"] for n in ("A01", "A02", "A03")] == [300.0, 500.0, 250.0]
    assert recs["A04"]["quality"] == ["too_short"] and recs["A04"]["predicted"] == "noisy"
    assert "flat" in recs["A05"]["quality"] and not recs["A05"]["decided"]
    assert all(recs[n]["decided"] for n in ("A01", "A02", "A03"))
    assert report["quality"]["too_short"] == 1 and report["quality"]["undecided"] == 2
    matrix = np.array(report["confusion"]["matrix"])
    assert matrix.shape == (4, 4) and matrix.sum() == 5 and matrix[3, 3] == 1
    lo, hi = report["bootstrap"]["ci"]["cinc_mean_f1"]
    assert lo <= report["cinc_mean_f1"] <= hi
    assert report["model"]["sha256"] and report["model"]["classes"] == ["N", "AF", "O", "noisy"]


def test_the_v1_softmax_is_scored_the_same_way(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _evaluate(folder, "--model", str(PRETRAINED / "rhythm_softmax.onnx"))
    out = capsys.readouterr().out
    assert rc == 0 and "CinC mean F1 (N, AF, O)" in out and "confusion" in out
    # v1 reads RR only: the regular spike train is N, the irregular one AF
    rc = _evaluate(folder, "--model", str(PRETRAINED / "rhythm_softmax.onnx"), "--json")
    recs = {r["record"]: r["predicted"] for r in json.loads(capsys.readouterr().out)["records"]}
    assert rc == 0 and (recs["A01"], recs["A02"]) == ("N", "AF")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "A01.mat").write_bytes(b"\x00garbage"), "A01.mat: not a MATLAB v4 file"),
        (lambda d: (d / "A01.mat").unlink(), "recording 'A01'"),
        (lambda d: (d / "A03.csv").write_text("time,ecg\n0,1\n0.004,zz\n"), "A03.csv"),
        (lambda d: (d / "A02.hea").write_text("A02 1 abc 100\n"), "A02"),
    ],
)
def test_an_unreadable_recording_is_one_error_line(
    folder: Path, damage: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    damage(folder)  # type: ignore[operator]
    # Execute
    rc = _evaluate(folder, "--json")
    captured = capsys.readouterr()
    # Assert
    assert rc == 2 and message in captured.err and captured.err.count("\n") == 1
    assert captured.out == "" and "Traceback" not in captured.err


@pytest.mark.parametrize("fs", ["10", "60", "0"])
def test_an_ecg_rate_no_device_records_is_one_error_line(
    folder: Path, fs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # .mat recordings at --fs 10 were scored (resampled into "noisy" with a decision) where a
    # CSV at that rate is refused; --fs is held to the ECG range of the edge and the replays
    rc = _evaluate(folder, "--fs", fs, "--json")
    err = capsys.readouterr().err
    assert rc == 2 and f"--fs: sampling rate {fs} Hz is outside [100, 10000] Hz for ecg" in err
