"""Run a set of child processes as one system and stop them all cleanly.

Each component runs in its own session (process group) with its output in a log file, so
Ctrl-C on ``medchain demo`` terminates every group — the children's own children (a broker, a
web server's reloader) included — and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One process of the system.

    Attributes
    ----------
    name : str
        Short name, also the log file's stem.
    argv : sequence of str
        Command line.
    env : mapping
        Extra environment variables.
    critical : bool
        If True, the system stops when this process exits.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    critical: bool = True


@dataclass
class Running:
    """A started component."""

    component: Component
    process: subprocess.Popen[bytes]
    log_path: Path


class Supervisor:
    """Start components, watch them, stop them in reverse order.

    Parameters
    ----------
    log_dir : Path
        Folder for one ``<name>.log`` per component.
    base_env : mapping
        Environment of the children (the caller passes ``os.environ`` plus its own settings).
    """

    def __init__(self, log_dir: Path, base_env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.base_env = dict(base_env)
        self.running: list[Running] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, comp: Component, *, stdin: bool = False) -> Running:
        """Start one component with its output in ``log_dir/<name>.log``."""
        log_path = self.log_dir / f"{comp.name}.log"
        env = {**self.base_env, **comp.env}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(  # noqa: S603
                list(comp.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        run = Running(comp, proc, log_path)
        self.running.append(run)
        _LOGGER.info("started %s (pid %d): %s", comp.name, proc.pid, " ".join(comp.argv))
        return run

    def run_once(self, comp: Component, timeout: float = 120.0, stdin_text: str = "") -> None:
        """Run a component to completion (a setup step); raise if it fails.

        ``stdin_text`` is written to its standard input (e.g. a password, never on argv).

        Raises
        ------
        RuntimeError
            With the tail of its log, if it exits non-zero or times out.
        """
        run = self.start(comp, stdin=bool(stdin_text))
        self.running.remove(run)
        try:
            if stdin_text and run.process.stdin is not None:
                run.process.stdin.write(stdin_text.encode())
                run.process.stdin.close()
            code = run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._stop(run)
            raise RuntimeError(f"{comp.name} did not finish within {timeout:.0f} s") from None
        if code != 0:
            raise RuntimeError(f"{comp.name} failed (exit {code}):\n{self.tail(run.log_path)}")

    def failed(self) -> list[Running]:
        """Critical components that have exited."""
        return [r for r in self.running if r.component.critical and r.process.poll() is not None]

    @staticmethod
    def tail(path: Path, lines: int = 15) -> str:
        """Last lines of a log file."""
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _stop(self, run: Running, timeout: float = 8.0) -> None:
        proc = run.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _LOGGER.warning("%s ignored SIGTERM; killing it", run.component.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        # The group may hold grandchildren that outlived their parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Stop every component, last started first."""
        for run in reversed(self.running):
            self._stop(run)
        self.running.clear()

    def wait_until(self, predicate: object, timeout: float, poll: float = 0.5) -> bool:
        """Poll ``predicate()`` until it is true, a critical component dies, or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return True
            if self.failed():
                return False
            time.sleep(poll)
        return False
