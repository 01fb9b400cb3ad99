"""``medchain demo`` stopped by SIGTERM (``kill``, systemd) or SIGHUP (terminal closed) stops
everything it started, as Ctrl-C does: no process left, the web port free (integration)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medchain.broker import free_port, port_open

pytestmark = pytest.mark.integration


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process on the machine (from /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (children in their own sessions included): pid -> cmdline."""
    tree, found, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().decode()
            except OSError:
                continue
            todo.append(child)
    return found


def alive(pid: int, cmdline: str) -> bool:
    """True if ``pid`` still runs the same command (and is not a zombie)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        now = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode()
    except OSError:
        return False
    return now == cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_demo(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "medchain", "demo", "--simulated", "--patients", "2",
           "--web-port", str(port), "--workdir", str(tmp_path / "demo"), "--warmup", "600"]  # fmt: skip
    env = {**os.environ, "MEDCHAIN_DEMO_PASSWORD": "demo-password-1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603


def page_served(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:  # noqa: S310
            return bool(r.status == 200)
    except OSError:
        return False


def stop_and_check(proc: subprocess.Popen[bytes], signum: int, port: int) -> str:
    """Send ``signum``; assert the demo exits 0 and leaves no process and a free port."""
    started = descendants(proc.pid)
    assert started, "the demo started no child process"
    proc.send_signal(signum)
    try:
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    deadline = time.monotonic() + 5
    left = started
    while left and time.monotonic() < deadline:
        left = {pid: cmd for pid, cmd in started.items() if alive(pid, cmd)}
        time.sleep(0.1)
    for pid in left:  # a failing run must not leave its orphans to the next test
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode is not None and proc.returncode >= 0, output[-3000:]
    assert left == {}, f"left running after signal {signum}: {left}\n{output[-3000:]}"
    assert not port_open(port), f"port {port} still in use"
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_every_process_of_a_running_demo(tmp_path: Path, signum: int) -> None:
    # Prepare: the system is up (the page is served, agents replaying)
    port = free_port()
    proc = start_demo(tmp_path, port)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not page_served(port):
            time.sleep(0.5)
        assert page_served(port), "the demo did not serve its page"
        # Execute / Assert
        output = stop_and_check(proc, signum, port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped; nothing left running." in output


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    # Prepare: the broker is up, the web app and agents are still starting
    port = free_port()
    proc = start_demo(tmp_path, port)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "MQTT broker" in line, line
        # Execute / Assert
        stop_and_check(proc, signal.SIGTERM, port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
