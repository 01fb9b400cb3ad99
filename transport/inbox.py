"""Where paho's callbacks put what they receive: a bounded thread queue or an asyncio loop.

paho runs callbacks on its network thread; they must never block it (a slow consumer would
stall keepalives and acknowledgements). So a callback only puts the message into a bounded
inbox and returns; a full inbox drops the newest message, counts and logs it (an unacknowledged
QoS 1 message comes back from the broker after a reconnect; a dropped QoS 0 sample is gone).
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound message (``mid`` and ``qos`` for a manual acknowledgement)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


def _count_drop(name: str, dropped: int) -> None:
    if dropped & (dropped - 1) == 0:  # 1, 2, 4, 8...: logged, never flooding the log
        _LOGGER.warning("%s full: %d message(s) dropped so far", name, dropped)


def hand_to_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """Schedule ``fn(*args)`` on ``loop`` from any thread; False when the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop has ended (a late acknowledgement after shutdown)
        return False
    return True


class QueueInbox(Generic[T]):
    """A bounded thread-safe queue for a consumer thread.

    Parameters
    ----------
    maxsize : int
        Items kept before new ones are dropped (and counted in ``dropped``).
    name : str
        For the log.
    """

    def __init__(self, maxsize: int, name: str = "inbox") -> None:
        self._queue: queue.Queue[T] = queue.Queue(maxsize)
        self.name = name
        self.dropped = 0

    def put(self, item: T) -> None:
        """Enqueue without blocking (safe on the network thread)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            _count_drop(self.name, self.dropped)

    def get(self, timeout_s: float) -> T | None:
        """The next item, or None after ``timeout_s`` s."""
        try:
            return self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def drain(self) -> list[T]:
        """Every item queued now, without waiting."""
        items: list[T] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def empty(self) -> bool:
        """True when nothing is queued."""
        return self._queue.empty()


class LoopInbox(Generic[T]):
    """A bounded ``asyncio.Queue`` fed from paho's thread through ``call_soon_threadsafe``.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The consumer's loop.
    maxsize : int
        Items kept before new ones are dropped (and counted in ``dropped``).
    name : str
        For the log.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, name: str = "inbox") -> None:
        self._loop = loop
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.name = name
        self.dropped = 0

    def put(self, item: T) -> None:
        """Hand ``item`` to the loop (safe on any thread; dropped if the loop has ended)."""
        if not hand_to_loop(self._loop, self._put, item):
            self.dropped += 1

    def _put(self, item: T) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            _count_drop(self.name, self.dropped)

    async def get(self) -> T:
        """The next item (on the loop)."""
        return await self._queue.get()
