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


def test_devices_stop_first_while_the_service_they_report_to_still_runs(tmp_path: Path) -> None:
    # Prepare: a service started after two devices (as the demo starts the aggregator last);
    # on SIGTERM a device must still reach the service to stop cleanly (exit 0), else exit 3
    from tests.support.services import free_port

    port = free_port()
    service = (
        "import signal, socket, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0));"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "while True: s.accept()[0].close()"
    )
    device = (
        "import signal, socket, sys, time\n"
        "def stop(*a):\n"
        "    for _ in range(20):\n"
        "        try:\n"
        f"            socket.create_connection(('127.0.0.1', {port}), 0.2).close(); sys.exit(0)\n"
        "        except OSError: time.sleep(0.1)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(sys.argv[1], 'w').close()\n"  # ready: a SIGTERM before this would kill it
        "while True: time.sleep(0.05)"
    )
    sup = Supervisor(tmp_path / "logs", os.environ)
    devices = [
        sup.start(
            Component(
                f"dev{i}",
                [sys.executable, "-c", device, str(tmp_path / f"dev{i}.ready")],
                stop_first=True,
            )
        )
        for i in range(2)
    ]
    sup.start(Component("service", [sys.executable, "-c", service]))
    deadline = time.monotonic() + 30  # a loaded machine starts Python slowly
    while time.monotonic() < deadline and not all(
        (tmp_path / f"dev{i}.ready").exists() for i in range(2)
    ):
        time.sleep(0.05)
    while time.monotonic() < deadline:
        try:
            import socket

            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    # Execute
    started = time.monotonic()
    sup.stop_all()
    # Assert: both devices reached the service (a clean stop), together, nobody killed
    assert [d.process.returncode for d in devices] == [0, 0]
    assert time.monotonic() - started < 5
