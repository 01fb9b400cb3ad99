"""Real services for integration tests: a private Mosquitto per test run, PostgreSQL checks.

Integration tests never skip in CI (``MEDCHAIN_REQUIRE_SERVICES=1``, set by ``.ci/run``): a
missing service fails the test with a message saying how to start it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_URL = os.environ.get("MEDCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def require_service(name: str, hint: str) -> None:
    """Fail (in CI) or skip (on a developer machine without the service)."""
    msg = f"{name} is not available: {hint}"
    if os.environ.get("MEDCHAIN_REQUIRE_SERVICES") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Block until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Mosquitto:
    """A running private mosquitto process."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def run_mosquitto(extra_conf: str = "", port: int | None = None) -> Iterator[Mosquitto]:
    """Start ``mosquitto`` on a free loopback port with its own config; stop it afterwards.

    Parameters
    ----------
    extra_conf : str
        Extra configuration lines (auth, ACL, TLS...). Without ``listener`` lines a plain
        anonymous listener on the port is added.
    port : int, optional
        Port to use (for restart tests); a free one by default.
    """
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        require_service("mosquitto", "apt-get install mosquitto")
        raise AssertionError("unreachable")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="medchain-mosq-"))
    conf = workdir / "mosquitto.conf"
    lines = ["persistence false", "log_dest stderr"]
    if "listener" not in extra_conf:
        lines += [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    conf.write_text("\n".join(lines) + "\n" + extra_conf.replace("{port}", str(port)) + "\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # noqa: S603
    broker = Mosquitto(port, proc, workdir)
    try:
        wait_port(port)
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_available(url: str = PG_URL) -> bool:
    """True if a PostgreSQL server answers at ``url``."""
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def pg_schema_url(prefix: str) -> Iterator[str]:
    """A PostgreSQL store URL with a fresh schema ``<prefix>_<random>``, dropped afterwards.

    Fails (CI) or skips (developer machine) when PostgreSQL is not reachable.
    """
    import uuid

    import psycopg

    if not postgres_available():
        require_service("postgresql", "start PostgreSQL on 127.0.0.1:5432 (see .ci/run)")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
