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
SECRET = "serve-test-5d1e9b7c3a2f4e6d8c0b1a3f5e7d9c2b"


def _start(tmp_path: Path, broker: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDCHAIN_WEB_SECRET_KEY": SECRET}
    cmd = [sys.executable, "-m", "medchain", "web", "--store", f"sqlite:///{tmp_path / 'w.db'}",
           "--broker", broker, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )  # noqa: S603
    return proc, port


def test_medchain_web_serves_and_stops_on_sigint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # Prepare
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDCHAIN_WEB_SECRET_KEY": SECRET}
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


def test_medchain_web_runs_under_gunicorn_and_sigterm_ends_open_streams(tmp_path: Path) -> None:
    # Prepare: a patient with an access code, so that a live stream can be opened
    from store.factory import open_store
    from web.security import new_patient_token

    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    code, code_hash = new_patient_token()
    store.register_client("p1")
    store.create_patient_token(code_hash, "p1", expires_at=None)
    store.close()
    proc, port = _start(tmp_path, "")
    try:
        wait_port(port, timeout=30)
        # Execute
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310
            server = resp.headers.get("Server", "")
        req = urllib.request.Request(  # noqa: S310
            f"http://127.0.0.1:{port}/api/patients/p1/stream",
            headers={"Authorization": f"Bearer {code}"},
        )
        stream = urllib.request.urlopen(req, timeout=10)  # noqa: S310
        first = stream.readline()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        stopped_s = time.monotonic() - t0
        stream.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    # Assert: a real WSGI server (gunicorn, threads), and an open stream does not hold it up
    assert server.startswith("gunicorn"), server
    assert first.startswith(b"retry:")
    assert proc.returncode == 0, err
    assert stopped_s < 8.0, stopped_s
