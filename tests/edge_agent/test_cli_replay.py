"""``medchain edge`` replaying a file as a newcomer would (issue 19, item 4).

State under the user's state directory (not the current one), a progress display and a one-line
summary on stderr, ``pred`` and ``ref`` in ``--out``, routine events not logged as warnings.
Replays a simulated, annotated WFDB record (``medchain.synthetic_ecg``): no dataset needed.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import default_state_dir
from edge_agent.progress import ReplayProgress
from medchain.cli import main
from medchain.synthetic_ecg import simulate_ecg, write_wfdb

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s of simulated ECG at 130 bpm (tachycardia events), PVCs, APCs, annotations."""
    rec = simulate_ecg(90.0, hr_bpm=130.0, pvc_rate=0.08, seed=5)
    return write_wfdb(rec, tmp_path_factory.mktemp("rec"), "sim5")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with an XDG state directory, working in an unrelated folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_state_goes_to_the_users_state_directory_not_the_current_one(
    record: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc = main(["edge", "--source", f"replay:{record}", "--speed", "max"])

    # Assert: the buffer is under $XDG_STATE_HOME/medchain/edge/<client id>, cwd is untouched
    assert rc == 0
    assert (home / "xdg" / "medchain" / "edge" / "edge-1" / "edge_buffer.sqlite").is_file()
    assert list((home / "cwd").iterdir()) == []
    capsys.readouterr()


def test_state_dir_and_buffer_flags_override_the_default(
    record: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc1 = main(["edge", "--source", f"replay:{record}", "--speed", "max", "--state-dir", "st"])
    rc2 = main(["edge", "--source", f"replay:{record}", "--speed", "max", "--buffer", "b.sqlite"])

    # Assert
    assert (rc1, rc2) == (0, 0)
    assert (home / "cwd" / "st" / "edge_buffer.sqlite").is_file()
    assert (home / "cwd" / "b.sqlite").is_file()
    assert not (home / "xdg").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_STATE_HOME": "/x/state"}, "/x/state/medchain/edge/dev"),
        ({}, "~/.local/state/medchain/edge/dev"),
        ({"XDG_STATE_HOME": "relative/ignored"}, "~/.local/state/medchain/edge/dev"),
        (
            {"STATE_DIRECTORY": "/var/lib/medchain", "XDG_STATE_HOME": "/x"},
            "/var/lib/medchain/edge/dev",
        ),
    ],
)
def test_default_state_dir(env: dict[str, str], expected: str) -> None:
    assert default_state_dir(env, "dev") == Path(expected).expanduser()


def test_out_has_pred_and_the_reference_annotation_beside_it(
    record: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    out = home / "beats.jsonl"
    rc = main(["edge", "--source", f"replay:{record}", "--speed", "max", "--out", str(out)])

    # Assert: "pred" holds the prediction, "ref" the annotated class; no "label" any more
    assert rc == 0
    beats = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "beat"]
    assert len(beats) > 100
    assert all("pred" in b and "ref" in b and "label" not in b for b in beats)
    matched = [b for b in beats if b["ref"] is not None]
    assert len(matched) >= 0.95 * len(beats)
    assert sum(b["pred"] == b["ref"] for b in matched) >= 0.6 * len(matched)
    capsys.readouterr()


def test_out_of_a_replay_without_annotations_has_no_ref(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the same kind of signal as a CSV (no annotation file)
    sig = simulate_ecg(30.0, seed=6).signal
    csv = home / "ecg.csv"
    csv.write_text("ecg_uv\n" + "\n".join(f"{v:.1f}" for v in sig) + "\n")
    out = home / "beats.jsonl"

    # Execute
    rc = main(["edge", "--source", f"replay:{csv}?fs=360", "--speed", "max", "--out", str(out)])

    # Assert
    assert rc == 0
    beats = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "beat"]
    assert beats and all("pred" in b and "ref" not in b for b in beats)
    capsys.readouterr()


def test_a_replay_shows_progress_and_ends_with_a_one_line_summary(
    record: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute (stderr is not a terminal here: plain progress lines)
    rc = main(["edge", "--source", f"replay:{record}", "--speed", "max"])

    # Assert: a start line, progress lines up to 100 %, one summary line, JSON alone on stdout
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("medchain edge:")]
    assert rc == 0 and lines[0].startswith("medchain edge: replaying wfdb:sim5")
    assert "90.0 s of signal" in lines[0]
    assert any(" 50 % " in ln for ln in lines) and any(" 100 % " in ln for ln in lines)
    summary = lines[-1]
    assert f"{stats['beats']} beats (" in summary and "of ECG in" in summary
    assert "x real time" in summary and "edge_buffer.sqlite" in summary


def test_realtime_replays_say_how_to_go_fast_and_a_terminal_gets_a_bar() -> None:
    # Prepare
    plain, tty = io.StringIO(), io.StringIO()

    # Execute
    for stream, is_tty in ((plain, False), (tty, True)):
        progress = ReplayProgress(stream, tty=is_tty, realtime=True)
        progress.start("wfdb:100", 1800.0)
        for s in range(0, 1801, 60):
            progress.update(float(s), s)
        progress.close()

    # Assert
    assert "--speed max" in plain.getvalue() and "--speed max" in tty.getvalue()
    assert "100 %" in plain.getvalue()
    assert "100%|" in tty.getvalue() and "1800/1800" in tty.getvalue()  # tqdm's bar


def test_routine_events_are_not_logged_as_warnings(
    record: Path, home: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    with caplog.at_level(logging.INFO):
        rc = main(["edge", "--source", f"replay:{record}", "--speed", "max"])

    # Assert: events were found and logged, at INFO
    stats = json.loads(capsys.readouterr().out)
    assert rc == 0 and stats["events"] > 0
    events = [r for r in caplog.records if r.getMessage().startswith("event ")]
    assert len(events) == stats["events"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings if r.name.startswith("edge_agent")] == []


def test_gitignore_covers_edge_buffers() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: .gitignore is not in effect")
    for path in ("edge_buffer.sqlite", "some/dir/b.sqlite"):
        rc = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode
        assert rc == 0, f"{path} is not ignored"


def test_without_tqdm_a_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: an edge-only install (tqdm is not in the edge extra)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()

    # Execute
    progress = ReplayProgress(stream, tty=True)
    progress.start("wfdb:100", 100.0)
    progress.update(100.0, 120)
    progress.close()

    # Assert
    assert "medchain edge: wfdb:100: 100 % (100 s of 100 s), 120 beats" in stream.getvalue()
