"""SQLite backend (embedded default): WAL journal, busy timeout, one writer lock.

One connection per store object (``check_same_thread=False``) guarded by a lock, so threads of
one process take turns; other processes on the same file wait on SQLite's own lock for up to
the busy timeout (writes start with ``BEGIN IMMEDIATE`` so they never deadlock on upgrade).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from store.errors import ConflictError, StoreError, StoreUnavailableError
from store.sql_base import CursorTx, Dialect, Tx
from store.sql_store import SqlStore

_LOGGER = logging.getLogger(__name__)

MIN_SQLITE = (3, 35, 0)  # RETURNING and ON CONFLICT ... DO UPDATE ... WHERE


def _set_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch to WAL, retrying while another connection holds the file.

    SQLite can answer ``database is locked`` to the journal-mode change at once, without its
    busy handler (seen when several processes or threads open a fresh database together and one
    of them is already migrating it), so the wait is ours, bounded by ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "not a database")


def _translate(url: str, exc: sqlite3.Error) -> StoreError:
    """Map a driver error to a store error (the caller raises it ``from exc``)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(f"constraint violated: {exc}")
    msg = str(exc)
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and any(
        k in msg.lower() for k in _UNAVAILABLE
    ):
        return StoreUnavailableError(url, msg)
    return StoreError(f"sqlite: {msg}")


class SqliteStore(SqlStore):
    """The store in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file (created with its folder if missing), or ``":memory:"``.
    url : str, optional
        The URL it was opened from (for messages).
    clock : callable, optional
        Unix seconds; ``time.time`` by default.
    busy_timeout_s : float
        How long a write waits for another process's write lock before
        :class:`StoreUnavailableError` (s).
    schema : {"upgrade", "check", "ignore"}
        Apply pending migrations at open (default), only check the version, or do nothing.
    synchronous : {"FULL", "NORMAL"}
        ``FULL`` (default) makes every commit durable across power loss; ``NORMAL`` is faster
        and loses at most the last commits on power loss (never corrupts, WAL mode).
    """

    dialect = Dialect(
        "sqlite",
        share_lock="",
        update_lock="",
        migrations_table_exists=(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ),
    )

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        clock: Callable[[], float] | None = None,
        busy_timeout_s: float = 10.0,
        schema: str = "upgrade",
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(url or f"sqlite:///{path}", clock)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old, need >= 3.35")
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        memory = str(path) == ":memory:"
        # The one writer lock; it also keeps threads from interleaving on the one connection.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not memory:
                _set_wal(self._conn, busy_timeout_s)
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StoreUnavailableError(self.url, str(exc)) from exc
        try:
            self._apply_policy(schema)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Tx]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"store {self.url} is closed")
            cur = conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise _translate(self.url, exc) from exc
            try:
                yield CursorTx(cur, self.url, driver_error=sqlite3.Error, translate=_translate)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _translate(self.url, exc) from exc
            finally:
                cur.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
