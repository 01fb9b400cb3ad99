"""The supervisor starts, watches and stops process groups without leaving anything behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from medchain.supervisor import Component, Supervisor


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_all_kills_children_and_grandchildren(tmp_path: Path) -> None:
    # Prepare: a child that starts a grandchild which ignores SIGTERM.
    code = (
        "import subprocess, sys, time, pathlib;"
        "p = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
        f"pathlib.Path(r'{tmp_path}/gc.pid').write_text(str(p.pid)); time.sleep(60)"
    )
    sup = Supervisor(tmp_path / "logs", os.environ)
    run = sup.start(Component("worker", [sys.executable, "-c", code]))
    for _ in range(100):
        if (tmp_path / "gc.pid").exists() and (tmp_path / "gc.pid").read_text():
            break
        time.sleep(0.05)
    grandchild = int((tmp_path / "gc.pid").read_text())
    # Execute
    sup.stop_all()
    # Assert
    assert run.process.poll() is not None
    for _ in range(40):
        if not _alive(grandchild):
            break
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_failed_critical_component_is_reported(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", os.environ)
    sup.start(Component("dies", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]))
    assert not sup.wait_until(lambda: False, timeout=10, poll=0.05)
    (dead,) = sup.failed()
    assert dead.process.returncode == 3
    assert "boom" in sup.tail(dead.log_path)
    sup.stop_all()


def test_run_once_raises_with_log_tail(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", os.environ)
    with pytest.raises(RuntimeError, match="exit 2"):
        sup.run_once(
            Component("setup", [sys.executable, "-c", "import sys; print('bad'); sys.exit(2)"])
        )
    sup.run_once(Component("ok", [sys.executable, "-c", "pass"]))
