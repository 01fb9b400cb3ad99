"""Store batches of updates on a thread of their own, overlapped with screening the next batch.

The service's thread decodes and validates batch k+1 while this thread commits batch k: most of
a commit is waiting for the database (round trips, the WAL flush), time the screening can use.
The guarantees of the one-thread intake hold:

- a batch's messages are acknowledged on the writer thread right after its commit, never
  before (the work passed to :meth:`BatchWriter.submit` stores, then acknowledges);
- one batch at a time is in flight: the service waits for it (:meth:`BatchWriter.wait`)
  before it submits the next, so memory and unacknowledged messages stay bounded (the batch
  in flight and the one being screened);
- a batch that failed comes back to the service's thread with its messages
  (:class:`FailedBatch`): after a store outage they are handled again, unacknowledged until
  then; updates are idempotent by ``update_id``, so a batch stored twice counts once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

_LOGGER = logging.getLogger(__name__)

M = TypeVar("M")


@dataclass(frozen=True)
class FailedBatch(Generic[M]):
    """A batch whose work raised: its messages (none acknowledged) and the error."""

    messages: Sequence[M]
    error: Exception


class BatchWriter(Generic[M]):
    """Runs one batch's store work at a time on a background thread.

    Parameters
    ----------
    name : str
        Thread name prefix (shown by py-spy and in thread dumps).
    """

    def __init__(self, name: str = "update-writer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: tuple[Future[None], Sequence[M]] | None = None

    @property
    def busy(self) -> bool:
        """A batch is in flight (submitted, not yet collected by :meth:`wait`)."""
        return self._pending is not None

    def submit(self, work: Callable[[], None], messages: Sequence[M]) -> None:
        """Start ``work`` (store, then acknowledge ``messages``) on the writer thread.

        The batch in flight must have been collected first (:meth:`wait`): its failure decides
        what happens to the next one (after a store outage the service stops and retries).
        """
        if self._pending is not None:
            raise RuntimeError("a batch is in flight: wait() for it first")
        self._pending = (self._pool.submit(work), messages)

    def wait(self) -> FailedBatch[M] | None:
        """Wait until no batch is in flight; the last one if it failed."""
        if self._pending is None:
            return None
        future, messages = self._pending
        self._pending = None
        error = future.exception()  # waits; the work's own exception, not re-raised here
        if error is None:
            return None
        if not isinstance(error, Exception):  # KeyboardInterrupt and the like: not ours
            raise error
        return FailedBatch(messages, error)

    def close(self) -> FailedBatch[M] | None:
        """Wait for the batch in flight and end the thread (idempotent)."""
        failed = self.wait()
        self._pool.shutdown(wait=True)
        return failed
