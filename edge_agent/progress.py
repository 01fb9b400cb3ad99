"""What ``medchain edge`` shows a person replaying a file: progress, then a one-line summary.

On a terminal the progress is a tqdm bar (tqdm: small, pure Python, no dependencies, fine on a
Raspberry Pi); elsewhere (a log file, a pipe, systemd's journal) a plain line every 10 % of the
recording. Either goes to stderr, so the run's JSON counters stay alone on stdout.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

from common.types import SignalChunk
from edge_agent.agent_ports import AgentStats
from edge_agent.ports import ChunkSource

__all__ = ["ProgressSource", "ReplayProgress", "summary_line"]

PLAIN_STEP = 0.1  # fraction of the recording between two plain progress lines
FAST_HINT = "real time; --speed max processes it as fast as the CPU allows"


class ReplayProgress:
    """Progress of one replay, in seconds of signal.

    Parameters
    ----------
    stream : file
        Where it is written (stderr).
    tty : bool, optional
        Draw a bar (default: if ``stream`` is a terminal).
    realtime : bool
        The replay is paced in real time (the first line says how to go faster).
    """

    def __init__(self, stream: TextIO, tty: bool | None = None, realtime: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.realtime = realtime
        self.total_s: float | None = None
        self.done_s = 0.0
        self._name = ""
        self._bar: Any = None
        self._next_step = PLAIN_STEP

    def start(self, name: str, total_s: float | None) -> None:
        """The replay of ``name`` begins; ``total_s`` is its length in s, if known."""
        self._name, self.total_s = name, total_s
        pace = f" ({FAST_HINT})" if self.realtime else ""
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:  # an edge install without tqdm: plain lines
                self.tty = False
            else:
                # seconds of signal: whole seconds shown, the rate is the speed-up
                known = "{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                shape = "{desc}: " + (known if total_s else "{n:.0f} s ")
                self._bar = tqdm(
                    total=total_s,
                    desc=name + (" (real time)" if self.realtime else ""),
                    unit="s",
                    file=self.stream,
                    dynamic_ncols=True,
                    bar_format=shape + "[{elapsed}, {rate_noinv_fmt}{postfix}]",
                )
                if self.realtime:
                    self._bar.write(f"medchain edge: replaying in {FAST_HINT}", file=self.stream)
                return
        length = "" if total_s is None else f", {_duration(total_s)} of signal"
        self._line(f"replaying {name}{length}{pace}")

    def update(self, done_s: float, beats: int) -> None:
        """``done_s`` s of signal processed so far, ``beats`` beats found."""
        step, self.done_s = done_s - self.done_s, done_s
        if self._bar is not None:
            self._bar.update(round(step, 3))
            self._bar.set_postfix(beats=beats, refresh=False)
            return
        total = self.total_s
        if total and done_s / total >= self._next_step:
            self._next_step = (math.floor(done_s / total / PLAIN_STEP) + 1) * PLAIN_STEP
            self._line(
                f"{self._name}: {100 * min(done_s / total, 1.0):.0f} % "
                f"({done_s:.0f} s of {total:.0f} s), {beats} beats"
            )

    def close(self) -> None:
        """End the bar (the summary line follows it)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        print(f"medchain edge: {text}", file=self.stream, flush=True)


class ProgressSource:
    """A source whose chunks advance a :class:`ReplayProgress` once the agent handled them.

    Seconds are those of the first chunk's stream kind (ECG for an ECG replay), so a capture
    with ECG and accelerometer streams is not counted twice.
    """

    def __init__(
        self, source: ChunkSource, progress: ReplayProgress, beats: Callable[[], int]
    ) -> None:
        self.source = source
        self.progress = progress
        self._beats = beats
        self.name = str(getattr(source, "name", "source"))

    async def chunks(self) -> AsyncIterator[SignalChunk]:
        """The wrapped source's chunks."""
        done, kind = 0.0, None
        async for chunk in self.source.chunks():
            yield chunk  # the agent processes it before asking for the next one
            kind = kind or chunk.kind
            if chunk.kind == kind:
                done += chunk.duration_s
                self.progress.update(done, self._beats())


def summary_line(stats: AgentStats, wall_s: float, where: dict[str, str]) -> str:
    """One line for the end of a run: signal processed, speed, beats per class, events,
    rejects, and where the beats went (``where``: label -> path, e.g. ``out``, ``buffer``).
    """
    speed = f" ({stats.ecg_s / wall_s:.0f}x real time)" if wall_s > 0 and stats.ecg_s else ""
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(stats.beats_by_class.items()))
    events = ", ".join(f"{k} {v}" for k, v in sorted(stats.events_by_kind.items()))
    rejected = stats.source.get("rejected", 0) + stats.bad_payloads
    parts = [
        f"{_duration(stats.ecg_s)} of ECG in {wall_s:.1f} s{speed}",
        f"{stats.beats} beats" + (f" ({by_class})" if by_class else ""),
        f"{stats.events} events" + (f" ({events})" if events else ""),
        f"{rejected} rejected",
    ]
    parts += [f"{label} {path}" for label, path in where.items()]
    stopped = " (stopped by signal)" if stats.stopped_by_signal else ""
    name = f"{stats.source_name}: " if stats.source_name else ""
    return f"medchain edge: {name}" + "; ".join(parts) + stopped


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
