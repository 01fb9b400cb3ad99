"""Run a set of child processes as one system and stop them all cleanly.

Each component runs in its own session (process group) with its output in a log file, so
stopping ``medchain demo`` terminates every group — the children's own children (a broker, a
web server's reloader) included — and leaves no process behind. Being in their own sessions,
the children never see the terminal's Ctrl-C or hang-up, nor a ``kill`` of the parent: the
parent catches SIGINT, SIGTERM and SIGHUP (:class:`StopSignals`) and stops them itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

_LOGGER = logging.getLogger(__name__)

STOP_GRACE_S = 15.0  # SIGTERM -> SIGKILL, s; longer than an edge agent's drain (10 s)


class StopSignal(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: stop the system as Ctrl-C does.

    A ``KeyboardInterrupt``, so code that already stops on Ctrl-C stops on each of them, and
    ``except Exception`` clauses do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While entered, SIGINT, SIGTERM and SIGHUP raise :class:`StopSignal` in the main thread.

    - :meth:`held` defers them while a child is being started and recorded, so no signal can
      fall between ``Popen`` and the bookkeeping that stops the child later;
    - after the first one (or :meth:`stopping`), further signals are ignored, so a second
      Ctrl-C or a service manager's repeated SIGTERM cannot cut the shutdown short (its time
      is bounded: a child that ignores SIGTERM is killed);
    - a signal that was ignored when entering (``nohup``, a background job's SIGINT) stays so.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}
        self._held = 0
        self._pending: int | None = None
        self._stopping = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # Python sets signal handlers in the main thread only
        for signum in self.SIGNALS:
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            _LOGGER.info("%s ignored: already stopping", signal.Signals(signum).name)
        elif self._held:
            self._pending = signum
        else:
            self._stopping = True
            raise StopSignal(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Defer stop signals until the block ends (then raise the one that arrived)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending is not None and not self._stopping:
                signum, self._pending = self._pending, None
                self._stopping = True
                raise StopSignal(signum)

    def stopping(self) -> None:
        """The system is being stopped: ignore further stop signals."""
        self._stopping = True


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
    stop_first : bool
        Stopped before every other component, all such together (devices: their clean stop
        hands their last data to services that must still be running).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    critical: bool = True
    stop_first: bool = False


@dataclass
class Running:
    """A started component."""

    component: Component
    process: subprocess.Popen[bytes]
    log_path: Path


class Supervisor:
    """Start components, watch them, stop them (devices first, then in reverse start order).

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
        self.signals = StopSignals()
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, comp: Component, *, stdin: bool = False) -> Running:
        """Start one component with its output in ``log_dir/<name>.log``."""
        log_path = self.log_dir / f"{comp.name}.log"
        env = {**self.base_env, **comp.env}
        with self.signals.held(), open(log_path, "ab") as out:
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
        try:  # until it ends it stays in ``running``: a stop signal meanwhile stops it too
            if stdin_text and run.process.stdin is not None:
                run.process.stdin.write(stdin_text.encode())
                run.process.stdin.close()
            code = run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._stop(run)
            self.running.remove(run)
            raise RuntimeError(f"{comp.name} did not finish within {timeout:.0f} s") from None
        self.running.remove(run)
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

    def _stop(self, run: Running, timeout: float = STOP_GRACE_S) -> None:
        self._stop_together([run], timeout)

    @staticmethod
    def _stop_together(runs: Sequence[Running], timeout: float = STOP_GRACE_S) -> None:
        """SIGTERM to every group at once, then wait at most ``timeout`` s for all of them;
        SIGKILL for whoever is still there."""
        for run in runs:
            if run.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for run in runs:
            proc = run.process
            try:
                proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                _LOGGER.warning("%s ignored SIGTERM; killing it", run.component.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
            # The group may hold grandchildren that outlived their parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Stop every component (further stop signals are ignored): the ``stop_first`` ones
        together, then the others, last started first."""
        self.signals.stopping()
        first = [r for r in self.running if r.component.stop_first]
        self._stop_together(first)
        for run in reversed(self.running):
            if not run.component.stop_first:
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
