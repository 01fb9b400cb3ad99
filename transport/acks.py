"""Per-message publish acknowledgements: which callback a broker's PUBACK (by message id) fires.

paho reports an acknowledgement only by message id (``on_publish``, on its network thread),
and the id is known only once ``publish`` has returned — after which the PUBACK may already
have arrived. Holding a lock across ``publish`` would deadlock (paho calls ``on_publish``
holding its own lock, which ``publish`` needs), so an acknowledgement that arrives before its
callback is registered is kept aside while a registration is pending, and dropped otherwise
(the ids of plain publishes, which nobody waits for). Pure: no paho, no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

AckCallback = Callable[[bool], object]  # the result is ignored


class AckRegistry:
    """Message id -> callback, safe between the publishing threads and the network thread.

    Usage: :meth:`begin` before ``publish``, :meth:`register` with its id after it (None when
    the publish failed), :meth:`resolve` from ``on_publish``. Each callback runs exactly once,
    with True (acknowledged) or False (the broker refused it), on the thread that completes the
    pair: it must only enqueue or hand work to a loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, AckCallback] = {}
        self._early: dict[int, bool] = {}
        self._registering = 0

    def begin(self) -> None:
        """A publish with a callback is about to happen."""
        with self._lock:
            self._registering += 1

    def register(self, mid: int | None, callback: AckCallback) -> None:
        """The publish of :meth:`begin` returned ``mid`` (None: it failed, nothing to wait for)."""
        with self._lock:
            self._registering -= 1
            early = None if mid is None else self._early.pop(mid, None)
            if mid is not None and early is None:
                self._waiting[mid] = callback
            if self._registering == 0:
                self._early.clear()  # ids of plain publishes acknowledged meanwhile
        if early is not None:
            callback(early)

    def resolve(self, mid: int, ok: bool) -> None:
        """The broker answered message ``mid`` (``ok`` False: refused, MQTT 5 reason code)."""
        with self._lock:
            callback = self._waiting.pop(mid, None)
            if callback is None:
                if self._registering:
                    self._early[mid] = ok
                return
        callback(ok)

    @property
    def waiting(self) -> int:
        """Callbacks still waiting for their acknowledgement."""
        with self._lock:
            return len(self._waiting)
