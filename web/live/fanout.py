"""Bounded per-client message queues for server-sent events (pure, thread-safe).

Each SSE client owns a :class:`Subscription`. Publishing never blocks: when a slow client's
queue is full the oldest message is dropped and counted, so one stalled phone cannot hold up
the MQTT thread or grow memory without bound. Streams are capped in total and per *owner* (the
clinician or patient who opened them), so one account or access code cannot take every slot.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One server-sent event: its name and JSON-compatible data."""

    event: str
    data: dict[str, Any]


class Subscription:
    """A bounded queue of messages for one client of one patient.

    Parameters
    ----------
    client_id : str
        The patient (device) this subscription follows.
    maxsize : int
        Messages kept before the oldest are dropped.
    """

    def __init__(self, client_id: str, maxsize: int, owner: str = "") -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.client_id = client_id
        self.owner = owner
        self._queue: deque[Message] = deque(maxlen=maxsize)
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, msg: Message) -> None:
        """Enqueue without blocking; drop (and count) the oldest message when full."""
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(msg)
            self._cond.notify()

    def get_batch(self, timeout: float, limit: int = 64) -> list[Message]:
        """Wait up to ``timeout`` s for messages; return up to ``limit`` of them (maybe none)."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            out: list[Message] = []
            while self._queue and len(out) < limit:
                out.append(self._queue.popleft())
            return out

    def close(self) -> None:
        """Wake a waiting reader; the stream generator then ends."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class OwnerLimitError(Exception):
    """The owner already holds ``max_per_owner`` streams."""


class Fanout:
    """Subscriptions per patient, with caps on concurrent subscribers in total and per owner.

    Parameters
    ----------
    max_clients : int
        Streams in total.
    queue_size : int
        Messages buffered per stream.
    max_per_owner : int
        Streams one owner may hold at once (0: no per-owner cap).
    """

    def __init__(self, max_clients: int, queue_size: int, max_per_owner: int = 0) -> None:
        self._max = max_clients
        self._max_per_owner = max_per_owner
        self._queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self._owners: dict[str, int] = {}
        self._lock = threading.Lock()

    def subscribe(self, client_id: str, owner: str = "") -> Subscription | None:
        """A new subscription, or ``None`` when ``max_clients`` are already connected.

        Raises
        ------
        OwnerLimitError
            If ``owner`` (non-empty) already holds ``max_per_owner`` streams.
        """
        with self._lock:
            if sum(len(s) for s in self._subs.values()) >= self._max:
                return None
            held = self._owners.get(owner, 0)
            if owner and self._max_per_owner and held >= self._max_per_owner:
                raise OwnerLimitError(owner)
            sub = Subscription(client_id, self._queue_size, owner)
            self._subs.setdefault(client_id, set()).add(sub)
            if owner:
                self._owners[owner] = held + 1
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        sub.close()
        with self._lock:
            subs = self._subs.get(sub.client_id)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            if not subs:
                del self._subs[sub.client_id]
            if sub.owner:
                left = self._owners.get(sub.owner, 1) - 1
                if left > 0:
                    self._owners[sub.owner] = left
                else:
                    self._owners.pop(sub.owner, None)

    def publish(self, client_id: str, msg: Message) -> int:
        """Send ``msg`` to every subscriber of ``client_id``; return how many got it."""
        with self._lock:
            targets = list(self._subs.get(client_id, ()))
        for sub in targets:
            sub.put(msg)
        return len(targets)

    def has_subscribers(self, client_id: str) -> bool:
        """True if someone follows ``client_id`` (lets publishers skip building messages)."""
        with self._lock:
            return bool(self._subs.get(client_id))

    def count(self) -> int:
        """Connected subscribers."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def close_all(self) -> None:
        """End every stream (app shutdown)."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
            self._subs.clear()
            self._owners.clear()
        for sub in subs:
            sub.close()
