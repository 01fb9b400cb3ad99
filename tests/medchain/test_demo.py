"""``medchain demo`` end to end: the web page comes up, patients' predictions flow in, a
federated round completes, and stopping leaves no process behind (integration)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medchain.broker import free_port

pytestmark = pytest.mark.integration


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute(sql))
    except sqlite3.Error:
        return []


def _leftovers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.datasets("mitdb")
def test_demo_runs_the_whole_system_and_stops_cleanly(tmp_path: Path, data_root: Path) -> None:
    # Prepare
    port = free_port()
    workdir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "medchain", "demo", "--patients", "2", "--web-port", str(port),
           "--workdir", str(workdir), "--warmup", "8", "--round-interval", "5", "--deadline", "30",
           "--duration", "240"]  # fmt: skip
    env = {
        **os.environ,
        "MEDCHAIN_DATA": str(data_root),
        "MEDCHAIN_DEMO_PASSWORD": "demo-password-1",
    }
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    db = workdir / "medchain.db"
    try:
        # Execute: wait for the page, predictions of both patients and one closed round
        deadline = time.monotonic() + 200
        page = clients = closed = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:  # noqa: S310
                    page = r.status
            except OSError:
                page = None
            clients = _query(db, "SELECT COUNT(DISTINCT client_id) FROM prediction")
            closed = _query(db, "SELECT COUNT(*) FROM fl_round WHERE state = 'closed'")
            if page == 200 and clients and clients[0][0] >= 2 and closed and closed[0][0] >= 1:
                break
            time.sleep(2)
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    # Assert
    assert page == 200, output[-3000:]
    assert clients and clients[0][0] >= 2, output[-3000:]
    assert closed and closed[0][0] >= 1, output[-3000:]
    assert "demo-password-1" in output and f"http://127.0.0.1:{port}/" in output
    # a link per patient to their own page, the access code in the fragment
    assert output.count(f"http://127.0.0.1:{port}/patient/login#code=") == 2
    assert proc.returncode == 0, output[-3000:]
    assert _leftovers(str(workdir)) == []
