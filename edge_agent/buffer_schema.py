"""The edge buffer's SQLite file (:mod:`edge_agent.buffer`): opening it, its tables, the
upgrade of older files, and a damaged file set aside.

``outbox``: predictions and events waiting for the store (``state``: pending, inflight, sent,
stored, rejected; ``batch`` and ``sent_at`` track a payload until the store's receipt).
``recent_beats``: the model inputs of the newest beats, for clinician labels that come later.
``labelled_beats``: labelled beats with their inputs, the device's training data.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from common.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('beat', 'event')),
    t_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, t_ns);
CREATE TABLE IF NOT EXISTS recent_beats (
    t_ns INTEGER PRIMARY KEY,
    sample INTEGER NOT NULL,
    predicted TEXT NOT NULL,
    window BLOB NOT NULL,
    window_shape TEXT NOT NULL,
    rr BLOB NOT NULL,
    in_af INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS labelled_beats (
    t_ns INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    label_id TEXT NOT NULL,
    window BLOB NOT NULL,
    window_shape TEXT NOT NULL,
    rr BLOB NOT NULL,
    in_af INTEGER NOT NULL DEFAULT 0
);
"""

# columns added after the first release: (table, column, SQL type); older files get them
_ADDED = (
    ("outbox", "batch", "TEXT"),  # receipts from the store
    ("outbox", "sent_at", "REAL"),
    ("recent_beats", "in_af", "INTEGER NOT NULL DEFAULT 0"),  # the per-patient S-in-AF rule
    ("labelled_beats", "in_af", "INTEGER NOT NULL DEFAULT 0"),
)


def create_or_upgrade(db: sqlite3.Connection) -> None:
    """Create the tables, or add to a buffer written by an older version what it lacks (its
    rows are kept)."""
    db.executescript(SCHEMA)
    for table, column, kind in _ADDED:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.execute("CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (batch)")


def open_buffer_db(path: Path | str) -> sqlite3.Connection:
    """Open the buffer's database at ``path``, created or upgraded (autocommit, WAL).

    A file SQLite cannot read as a database, or whose quick check fails (storage damage on a
    Pi's SD card), is renamed ``<name>.corrupt-<unix s>`` (with its ``-wal``/``-shm``) and a
    fresh buffer is started, logged as an ERROR naming both files: monitoring goes on, and
    what the damaged file still holds is kept for recovery. Any other failure (no permission,
    a locked or full disk) leaves the file as it is and raises ConfigError naming it.

    Parameters
    ----------
    path : Path or str
        The file (``":memory:"`` for tests).

    Returns
    -------
    sqlite3.Connection
        Shared across threads (``check_same_thread=False``): the caller's lock guards it.

    Raises
    ------
    ConfigError
        The file cannot be opened and is not damaged, or a damaged one cannot be moved aside.
    """
    try:
        return _open(path)
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc) or str(path) == ":memory:":
            raise ConfigError(f"edge buffer {path}: cannot open it ({exc})") from exc
        try:
            aside = _set_aside(Path(path))
        except OSError as err:
            raise ConfigError(
                f"edge buffer {path} is damaged ({exc}) and cannot be moved aside ({err})"
            ) from err
        _LOGGER.error(
            "edge buffer %s is damaged (%s): moved to %s, starting empty", path, exc, aside
        )
        try:
            return _open(path)
        except sqlite3.DatabaseError as again:
            raise ConfigError(f"edge buffer {path}: cannot start a new one ({again})") from again


class _FailedCheck(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found damage."""


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is damaged (not a database, malformed), as opposed to a
    locked or full disk or a bug, where the file holds unsent predictions and must stay."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, _FailedCheck) or name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def _open(path: Path | str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # 512 KiB page cache instead of SQLite's 2 MiB: the agent only appends and reads the
        # newest rows, and resident memory on a Pi is the scarce resource
        db.execute("PRAGMA cache_size=-512")
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise _FailedCheck(f"quick_check: {check[0] if check else 'no answer'}")
        create_or_upgrade(db)
    except BaseException:
        db.close()
        raise
    return db


def _set_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    return aside


DELETE_BATCH = 10_000  # rows per DELETE when pruning: bounds each transaction and its journal


def delete_all_but_newest(db: sqlite3.Connection, table: str, keep: int, where: str = "1") -> int:
    """Delete the rows of ``table`` matching ``where`` but the ``keep`` newest.

    Parameters
    ----------
    db : sqlite3.Connection
        An autocommit connection: each batch of :data:`DELETE_BATCH` rows is its own
        transaction.
    table : str
        A table with a ``t_ns`` column (ns); module constants only (it is interpolated).
    keep : int
        Rows with the largest ``t_ns`` kept (ties at the boundary are kept too).
    where : str
        SQL condition on the rows considered; module constants only.

    Returns
    -------
    int
        Rows deleted.
    """
    row = db.execute(
        f"SELECT t_ns FROM {table} WHERE {where} ORDER BY t_ns DESC LIMIT 1 OFFSET ?",  # noqa: S608
        (max(keep, 1) - 1,),
    ).fetchone()
    if row is None:
        return 0
    deleted = 0
    while True:
        n = db.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "  # noqa: S608
            f"WHERE {where} AND t_ns < ? LIMIT ?)",
            (row[0], DELETE_BATCH),
        ).rowcount
        deleted += n
        if n < DELETE_BATCH:
            return deleted
