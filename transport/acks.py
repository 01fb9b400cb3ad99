"""Broker acknowledgements by message id (PUBACK, SUBACK) -> the callback waiting for each.

paho reports an acknowledgement only by message id (``on_publish``, ``on_subscribe``, on its
network thread), and the id is known only once ``publish``/``subscribe`` has returned — after
which the acknowledgement may already have arrived. Holding a lock across ``publish`` would
deadlock (paho calls ``on_publish`` holding its own lock, which ``publish`` needs), so an
acknowledgement that arrives before its callback is registered is kept aside while a
registration is pending, and dropped otherwise (the ids of plain publishes, which nobody waits
for). Pure: no paho, no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
AckCallback = Callable[[bool], object]  # a publish: True acknowledged, False refused


class AckRegistry(Generic[T]):
    """Message id -> callback, safe between the calling threads and the network thread.

    Usage: :meth:`begin` before ``publish``/``subscribe``, :meth:`register` with its id after it
    (None when it failed), :meth:`resolve` from the acknowledgement callback. Each callback runs
    exactly once, with the broker's answer (for a publish: True acknowledged, False refused), on
    the thread that completes the pair: it must only enqueue or hand work on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, Callable[[T], object]] = {}
        self._early: dict[int, T] = {}
        self._registering = 0

    def begin(self) -> None:
        """A publish/subscribe with a callback is about to happen."""
        with self._lock:
            self._registering += 1

    def register(self, mid: int | None, callback: Callable[[T], object]) -> None:
        """The call of :meth:`begin` returned ``mid`` (None: it failed, nothing to wait for)."""
        early: list[T] = []  # the answer, if it came first
        with self._lock:
            self._registering -= 1
            if mid is not None and mid in self._early:
                early.append(self._early.pop(mid))
            elif mid is not None:
                self._waiting[mid] = callback
            if self._registering == 0:
                self._early.clear()  # ids of plain publishes acknowledged meanwhile
        if early:
            callback(early[0])

    def resolve(self, mid: int, answer: T) -> None:
        """The broker answered message ``mid``."""
        with self._lock:
            callback = self._waiting.pop(mid, None)
            if callback is None:
                if self._registering:
                    self._early[mid] = answer
                return
        callback(answer)

    @property
    def waiting(self) -> int:
        """Callbacks still waiting for their acknowledgement."""
        with self._lock:
            return len(self._waiting)
