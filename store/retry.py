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


class Backoff:
    """Exponential back-off with full jitter for a loop that retries without end.

    The i-th delay (s) is uniform in ``[0, min(max_s, base_s * 2**i)]`` ("full jitter", so
    replicas that failed together do not retry together); :meth:`reset` after a success.
    """

    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.base_s, self.max_s = base_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto

    def next_delay(self) -> float:
        """The delay before the next try (s); counts one more failure."""
        cap = min(self.max_s, self.base_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return self._rng.uniform(0.0, cap)

    def reset(self) -> None:
        """A try succeeded: start again from ``base_s``."""
        self.failures = 0


def backoff_delays(
    attempts: int, base_delay_s: float, max_delay_s: float, rng: random.Random
) -> list[float]:
    """Sleep times (s) between ``attempts`` tries (see :class:`Backoff`)."""
    b = Backoff(base_delay_s, max_delay_s, rng)
    return [b.next_delay() for _ in range(attempts - 1)]


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
