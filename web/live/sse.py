"""Server-sent events: wire format and the per-client stream generator (pure).

The stream starts with ``retry:`` (reconnect delay for ``EventSource``) and a ``snapshot``
event (the ring buffers, latest prediction, status and flagged items), then relays the
subscription's messages in batches. When nothing happens for ``keepalive_s`` it sends a
comment line so that proxies keep the connection open; after ``max_stream_s`` the stream
ends and the browser reconnects, which frees the worker thread of clients that vanished.
Every ``recheck_s`` the stream asks ``still_allowed`` whether its caller may still watch (a
revoked access code, a disabled account, a log-out); if not it sends ``revoked`` and ends, and
the browser's reconnect is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from web.live.fanout import Subscription


def format_event(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One SSE frame: ``event:``, optional ``id:``, one ``data:`` line of compact JSON."""
    # json.dumps never emits a raw newline, so one data line always suffices.
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {body}\n\n"


def keepalive() -> str:
    """A comment frame (ignored by ``EventSource``)."""
    return ": keepalive\n\n"


def stream(
    sub: Subscription,
    snapshot: dict[str, Any] | None,
    *,
    retry_ms: int,
    keepalive_s: float,
    max_stream_s: float,
    on_close: Callable[[], None],
    clock: Callable[[], float] = time.monotonic,
    still_allowed: Callable[[], bool] | None = None,
    recheck_s: float = 5.0,
) -> Iterator[str]:
    """Yield SSE frames for one client until ``max_stream_s``, the subscription closes or
    ``still_allowed`` (asked every ``recheck_s`` s) turns false.

    ``retry_ms`` is the browser's reconnect delay (ms), ``keepalive_s`` the comment-frame
    interval (s) and ``clock`` a monotonic clock (s).

    ``on_close`` runs however the stream ends (client gone: the WSGI server closes the
    generator, which raises ``GeneratorExit`` at the pending ``yield``).
    """
    try:
        yield f"retry: {int(retry_ms)}\n\n"
        yield format_event("snapshot", snapshot or {"streams": {}})
        start = clock()
        end, next_check = start + max_stream_s, start + recheck_s
        seq = 0
        while not sub.closed:
            now = clock()
            remaining = end - now
            if remaining <= 0:
                break
            if still_allowed is not None and now >= next_check:
                if not still_allowed():
                    yield format_event("revoked", {"reason": "access ended"})
                    break
                next_check = now + recheck_s
            wait = min(keepalive_s, remaining)
            if still_allowed is not None:
                wait = min(wait, max(next_check - now, 0.0))
            batch = sub.get_batch(timeout=wait)
            if not batch:
                yield keepalive()
                continue
            frames = []
            for msg in batch:
                seq += 1
                frames.append(format_event(msg.event, msg.data, str(seq)))
            if sub.dropped:
                frames.append(format_event("dropped", {"count": sub.dropped}))
                sub.dropped = 0
            yield "".join(frames)
    finally:
        on_close()
