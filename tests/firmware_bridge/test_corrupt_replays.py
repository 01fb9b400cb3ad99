"""Corrupt replay files end in one clear line and a non-zero exit code, never a traceback.

The issue: 17 of 38 corrupt replay files (garbage header, fs 0, fs 1e10, n_samples 1e12,
truncated data...) ended ``medchain edge --source replay:FILE`` in a raw traceback, and a
header with sampling rate ``abc`` or ``-360`` silently became 250 Hz (false bradycardia). The
corpus (``corrupt_corpus``) is generated from small synthetic recordings in ``tmp_path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medchain.cli import main
from tests.firmware_bridge.corrupt_corpus import REFUSED, TOLERATED

ROOT = Path(__file__).resolve().parents[2]


def _edge(spec: str, tmp: Path) -> list[str]:
    return ["edge", "--source", spec, "--speed", "max", "--buffer", str(tmp / "b.sqlite")]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("medchain: error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_edge_refuses_a_corrupt_replay_in_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    spec = REFUSED[name](tmp_path)

    # Execute
    rc = main(_edge(spec, tmp_path))

    # Assert: exit code 2, one error line naming what is wrong, nothing on stdout
    captured = capsys.readouterr()
    assert rc == 2
    line = _one_error_line(captured.err)
    assert len(line) < 400
    assert captured.out == ""


@pytest.mark.parametrize("name", sorted(TOLERATED))
def test_edge_replays_what_is_usable_in_a_damaged_file(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    spec = TOLERATED[name](tmp_path)

    # Execute
    rc = main(_edge(spec, tmp_path))

    # Assert: replayed, beats found, the damage counted (captures) or logged (annotations)
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    stats = json.loads(captured.out)
    assert stats["beats"] > 5
    if name.startswith(("bin", "jsonl")):
        assert stats["source"]["rejected"] + stats["source"]["truncated"] >= 1


@pytest.mark.parametrize("fs", ["abc", "-360"])
def test_a_header_sampling_rate_that_is_not_a_rate_is_named_in_the_error(
    fs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    spec = REFUSED["wfdb_fs_abc" if fs == "abc" else "wfdb_fs_negative"](tmp_path)

    # Execute
    rc = main(_edge(spec, tmp_path))

    # Assert: refused (it used to replay at WFDB's default 250 Hz), the value quoted
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and repr(fs) in line and "Hz" in line


CAPTURES_REFUSED = sorted(n for n in REFUSED if n.startswith(("bin", "jsonl")))
CAPTURES_TOLERATED = sorted(n for n in TOLERATED if n.startswith(("bin", "jsonl")))


@pytest.mark.parametrize("name", CAPTURES_REFUSED)
def test_ble_replay_refuses_a_corrupt_capture_in_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = REFUSED[name](tmp_path).removeprefix("replay:")

    # Execute
    rc = main(["ble", "replay", path])

    # Assert
    assert rc == 2
    _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", CAPTURES_TOLERATED)
def test_ble_replay_decodes_what_is_usable_in_a_damaged_capture(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path = TOLERATED[name](tmp_path).removeprefix("replay:")

    # Execute
    rc = main(["ble", "replay", path])

    # Assert: the summary counts the damage
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["frames"] > 5
    assert summary["rejected"] + summary["truncated"] + summary["bad_lines"] >= 1


@pytest.mark.parametrize("name", ["wfdb_n_samples_1e12", "jsonl_deeply_nested_header"])
def test_a_real_process_prints_no_traceback(name: str, tmp_path: Path) -> None:
    # Prepare
    spec = REFUSED[name](tmp_path)

    # Execute
    proc = subprocess.run(
        [sys.executable, "-m", "medchain", *_edge(spec, tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Assert
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("medchain: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "header", "query", "fs"),
    [("ecg60.csv", "ecg", "?fs=60", 60.0), ("ppg5.csv", "ppg", "?fs=5&kind=ppg", 5.0)],
)
def test_a_replay_at_a_rate_the_processing_cannot_take_is_one_error_line(
    name: str,
    header: str,
    query: str,
    fs: float,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: rates the sources let through before (ECG from 50 Hz, PPG from 1 Hz) ended the
    # agent in a traceback from the ECG filters / the PPG tracker
    t = np.arange(0, 30, 1 / fs)
    path = tmp_path / name
    np.savetxt(path, 1000 * np.sin(2 * np.pi * 1.2 * t), header=header, comments="", fmt="%.3f")
    # Execute
    rc = main(["edge", "--source", f"replay:{path}{query}", "--speed", "max",
               "--buffer", str(tmp_path / "b.sqlite")])  # fmt: skip
    # Assert
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("medchain: error:")] == [
        f"medchain: error: {name} (fs): sampling rate {fs:g} Hz is outside "
        f"[{100 if header == 'ecg' else 10}, 10000] Hz for {header}"
    ]
