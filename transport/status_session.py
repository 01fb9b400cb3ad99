"""The stamps of one connection's statuses: a session per CONNECT, a count within it.

Each CONNECT starts a session (Unix ns, rising even if the clock steps back); its Last Will
closes it (``seq`` :data:`~common.payloads.WILL_SEQ`); every status published while it lasts
counts up from 1. The aggregator and the web apply a device's statuses in that order
(:func:`common.payloads.supersedes`), whatever order a clustered broker delivers them in: a
Will stored after the next connection's online status is then ignored, as Sparkplug B's
``bdSeq`` does. Pure apart from the clock; thread-safe (paho's network thread starts sessions
and publishes the online status, the device's own threads publish the rest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common.payloads import WILL_SEQ

StatusBuilder = Callable[[bool, str, int, int], bytes]  # online, detail, session, seq -> payload


class StatusSessions:
    """Stamps a device's status payloads.

    Parameters
    ----------
    build : callable
        ``build(online, detail, session, seq) -> payload``: the device's encoded status.
    clock_ns : callable
        Unix time in ns (the session numbers).
    """

    def __init__(self, build: StatusBuilder, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.build = build
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self.session = 0  # the latest CONNECT's (0: none yet)
        self._seq = 0

    def start(self) -> bytes:
        """A new session, before a CONNECT; returns its Last Will."""
        with self._lock:
            self.session = max(self.session + 1, self._clock_ns())
            self._seq = 0
            return self.build(False, "connection lost", self.session, WILL_SEQ)

    def next(self, online: bool, detail: str = "") -> bytes:
        """The session's next status."""
        with self._lock:
            self._seq += 1
            return self.build(online, detail, self.session, self._seq)
