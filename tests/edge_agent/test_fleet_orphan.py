"""A simulated fleet whose parent is killed stops by itself (it took over the next run's
device sessions before: 22 devices stayed logged in under the same client ids)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def test_the_fleet_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    # Prepare: a launcher starts a fleet of one device (broker unreachable: it keeps retrying)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "dev-1.npz", beat=np.zeros((2, 4), np.float32),
             labels=np.zeros(2, np.int64))  # fmt: skip
    fleet = [sys.executable, "-m", "edge_agent.federated", "--broker", "mqtt://127.0.0.1:9",
             "--data", str(tmp_path / "data"), "--work", str(tmp_path / "work"),
             "--seconds", "120"]  # fmt: skip
    launcher = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen({fleet!r}); print(p.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    time.sleep(1.0)
    assert _alive(pid)
    # Execute: the launcher dies without cleaning up
    parent.kill()
    parent.wait()
    parent.stdout.close()
    # Assert
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _alive(pid)
    if alive:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert not alive, "the fleet outlived its parent"
