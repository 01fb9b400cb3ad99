"""``medchain web`` as a process: serves, answers /healthz and pages, stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import Mosquitto, free_port, wait_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_medchain_web_serves_and_stops_on_sigint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # Prepare
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDCHAIN_WEB_SECRET_KEY": "serve-test"}
    cmd = [sys.executable, "-m", "medchain", "web", "--store", f"sqlite:///{tmp_path / 'w.db'}",
           "--broker", mosquitto.url, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )  # noqa: S603
    try:
        # Execute
        wait_port(port, timeout=30)
        deadline = time.monotonic() + 15
        while True:  # the live feed connects to the broker in the background
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310
                health = json.loads(resp.read())
            if health["broker_connected"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as resp:  # noqa: S310
            login_page = resp.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    # Assert
    assert health == {"ok": True, "broker_connected": True}
    assert b"Clinician log-in" in login_page
    assert proc.returncode in (0, 130), err
    assert f"http://127.0.0.1:{port}/" in out.decode()
