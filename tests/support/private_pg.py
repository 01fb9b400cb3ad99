"""A private PostgreSQL server in a temporary folder, for tests that stop and start it.

The machine's server (``PG_URL``) is shared by every test; a fault test that stops the database
for 20 s gets its own cluster (``initdb``) on a free loopback port instead. PostgreSQL refuses
to run as root, so under root (CI) the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.services import free_port, require_service, wait_port


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


class PrivatePostgres:
    """One cluster: ``start()``, ``stop()`` (fast shutdown) and ``kill()`` as often as needed.

    Parameters
    ----------
    folder : Path
        Where the cluster lives (created).
    port : int
        Loopback port it listens on.
    """

    def __init__(self, folder: Path, port: int) -> None:
        bindir = _bindir()
        if bindir is None:
            require_service("postgresql server binaries", "apt-get install postgresql")
            raise AssertionError("unreachable")
        self.bindir, self.folder, self.port = bindir, folder, port
        self.data = folder / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        folder.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(folder, "postgres", "postgres")
        self._run(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"])

    @property
    def url(self) -> str:
        """libpq URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, args: list[str]) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_postgres else cmd

    def _run(self, args: list[str]) -> None:
        subprocess.run(self._cmd(args), check=True, capture_output=True, timeout=120)  # noqa: S603

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        args = ["postgres", "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603
            self._cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port, 30.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(  # noqa: S603
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True, check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"private PostgreSQL on port {self.port} did not become ready")

    def stop(self) -> None:
        """Fast shutdown (connections are cut, as in a database restart)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if self.process is not None:
            self.process.wait(30)
            self.process = None


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster on a free port; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="medchain-pg-"))
    pg = PrivatePostgres(folder, free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
