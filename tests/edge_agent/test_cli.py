"""``medchain edge`` on a real MIT-BIH segment, offline, with --out."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import ConfigError, DataNotFoundError
from edge_agent.cli import _default_client_id
from medchain.cli import build_parser, main


@pytest.mark.datasets("mitdb")
def test_edge_replay_writes_beats_and_prints_stats(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: 2 min of record 119 (frequent VEBs, bigeminy)
    src = f"replay:{data_root / 'mitdb' / '119'}?duration_s=120&chunk_s=5"
    out = tmp_path / "beats.jsonl"
    # Execute
    rc = main(
        [
            "edge",
            "--source",
            src,
            "--speed",
            "max",
            "--out",
            str(out),
            "--buffer",
            str(tmp_path / "b.sqlite"),
        ]
    )
    # Assert
    assert rc == 0
    stats = json.loads(capsys.readouterr().out)
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    beats = [r for r in lines if r["type"] == "beat"]
    assert len(beats) == stats["beats"]
    assert 120 < len(beats) < 250  # ~80-100 bpm over 2 min
    assert sum(r["pred"] == "V" for r in beats) > 10  # record 119 is rich in VEBs
    assert stats["labels_annotation"] >= len(beats) - 2  # annotations kept for training
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-3 for r in beats)


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["edge", "--source", "replay:/nonexistent/rec", "--speed", "max", "--client-id", "bad id!"]
    )
    with pytest.raises(ConfigError, match="client id"):
        args.func(args, {})
    args = parser.parse_args(["edge", "--source", "replay:x", "--model", str(tmp_path / "m.onnx")])
    with pytest.raises(DataNotFoundError):
        args.func(args, {})
    args = parser.parse_args(["edge"])
    with pytest.raises(ConfigError, match="no source"):
        args.func(args, {})


def test_default_client_ids() -> None:
    assert _default_client_id("mqtt:sim-101?broker=x") == "sim-101"
    assert _default_client_id("ble:AA:BB:CC:DD:EE:FF") == "h10-AABBCCDDEEFF"
    assert _default_client_id("replay:/x") is None


@pytest.mark.datasets("mitdb")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_like_a_normal_end(data_root: Path, tmp_path: Path, signum: int) -> None:
    # Prepare: a real-time replay in a child process (the way systemd runs the agent)
    out, db = tmp_path / "beats.jsonl", tmp_path / "b.sqlite"
    src = f"replay:{data_root / 'mitdb' / '119'}?chunk_s=0.5"
    cmd = [sys.executable, "-m", "medchain", "edge", "--source", src, "--speed", "realtime"]
    cmd += ["--out", str(out), "--buffer", str(db)]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and out.read_text().count('"type":"beat"') >= 3:
                break
            time.sleep(0.1)
        # Execute
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Assert: exit 0, the same JSON counters as a normal end, every beat stored and written
    assert proc.returncode == 0, stderr.decode()[-2000:]
    stats = json.loads(stdout)
    assert stats["stopped_by_signal"] is True
    beats = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "beat"]
    assert stats["beats"] == len(beats) >= 3
    with sqlite3.connect(db) as con:
        (stored,) = con.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'beat'").fetchone()
    assert stored == len(beats)
