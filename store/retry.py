"""Retry with exponential back-off and full jitter, for services facing a database restart."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from store.errors import StoreUnavailableError

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delays(
    attempts: int, base_delay_s: float, max_delay_s: float, rng: random.Random
) -> list[float]:
    """Sleep times (s) between ``attempts`` tries: uniform in ``[0, min(max, base * 2**i)]``
    ("full jitter", so replicas that failed together do not retry together)."""
    return [rng.uniform(0.0, min(max_delay_s, base_delay_s * 2**i)) for i in range(attempts - 1)]


def retry_with_backoff(
    operation: Callable[[], T],
    *,
    attempts: int = 6,
    base_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
    retry_on: tuple[type[BaseException], ...] = (StoreUnavailableError,),
    what: str = "store operation",
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``operation`` until it succeeds, retrying only on ``retry_on`` errors.

    Parameters
    ----------
    operation : callable
        No-argument function; must be safe to repeat (store methods are: each is one
        transaction, and edge writes are idempotent).
    attempts : int
        Total tries (>= 1); the last error is raised when all fail.
    base_delay_s, max_delay_s : float
        Back-off scale and cap (s).
    retry_on : tuple of exception types
        What counts as transient (``StoreUnavailableError`` by default).
    what : str
        Name used in the log lines.
    sleep, rng : optional
        Injected for tests.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    delays = backoff_delays(attempts, base_delay_s, max_delay_s, rng or random.Random())  # noqa: S311
    for i, delay in enumerate([*delays, None]):
        try:
            return operation()
        except retry_on as exc:
            if delay is None:
                _LOGGER.error("%s failed after %d attempts: %s", what, attempts, exc)
                raise
            _LOGGER.warning(
                "%s failed (attempt %d/%d): %s; retrying in %.2f s",
                what,
                i + 1,
                attempts,
                exc,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
