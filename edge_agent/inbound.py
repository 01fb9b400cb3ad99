"""One log line for an inbound message the device could not use.

Inbound MQTT messages (clinician labels, round announcements, model releases) are untrusted:
their handlers catch every exception per message, count it and log one line naming the topic
and the size, then go on. Topic and error text come from the network, so both are escaped and
shortened here (a hostile label must not forge or flood log lines).
"""

from __future__ import annotations

__all__ = ["reject_line", "short"]

MAX_SHOWN = 160  # characters of a topic or an error message in a log line


def short(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` on one line: control characters escaped, at most ``limit`` characters."""
    shown = repr(str(text))[1:-1]
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def reject_line(topic: str, size: int, exc: BaseException) -> str:
    """The log line of a rejected message: topic, size in bytes, error type and message."""
    return f"rejected message on {short(topic)} ({size} bytes): {type(exc).__name__}: {short(exc)}"
