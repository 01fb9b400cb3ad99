"""Shared core of the SQL backends: transactions, dialect, JSON helpers, schema migrations.

All SQL of the store is written once, with ``?`` placeholders (parameterised, never formatted
with values); the PostgreSQL adapter rewrites ``?`` to ``%s``. A backend only supplies
:meth:`SqlStoreBase._tx`, a context manager yielding a :class:`Tx` inside one transaction.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from store.errors import SchemaVersionError
from store.migrate import MIGRATIONS_TABLE_SQL, latest_version, migrations, render

_LOGGER = logging.getLogger(__name__)

Row = tuple[Any, ...]

# What a store does about the schema when it opens.
SCHEMA_POLICIES = ("upgrade", "check", "ignore")


class Tx(Protocol):
    """One open transaction of a backend (driver errors already translated)."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement with ``?`` placeholders."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows; ``rowcount`` is the total."""

    def one(self) -> Row | None:
        """Next result row of the last statement, or None."""

    def all(self) -> list[Row]:
        """Remaining result rows of the last statement."""


class DbapiCursor(Protocol):
    """The slice of a DB-API 2 cursor (sqlite3, psycopg) that :class:`CursorTx` uses."""

    @property
    def rowcount(self) -> int:
        """Rows affected by the last statement."""

    def execute(self, query: str, params: Sequence[Any], /) -> Any:
        """Run one statement."""

    def executemany(self, query: str, rows: Sequence[Sequence[Any]], /) -> Any:
        """Run one statement for many parameter rows."""

    def fetchone(self) -> Sequence[Any] | None:
        """Next result row."""

    def fetchall(self) -> Sequence[Sequence[Any]]:
        """Remaining result rows."""


DriverError = TypeVar("DriverError", bound=Exception)


class CursorTx(Generic[DriverError]):
    """A :class:`Tx` over a DB-API cursor: parameters checked, SQL rewritten for the driver's
    placeholders, driver errors translated to store errors.

    Parameters
    ----------
    cursor : DbapiCursor
        The driver's cursor inside an open transaction.
    url : str
        Store URL for messages.
    driver_error : type
        Base class of the driver's errors (``sqlite3.Error``, ``psycopg.Error``).
    translate : callable
        ``(url, driver error) -> store error`` (raised ``from`` the driver error).
    rewrite : callable
        Our ``?``-placeholder SQL to the driver's paramstyle (identity for sqlite3).
    """

    def __init__(
        self,
        cursor: DbapiCursor,
        url: str,
        *,
        driver_error: type[DriverError],
        translate: Callable[[str, DriverError], Exception],
        rewrite: Callable[[str], str] = str,
    ) -> None:
        self._cur = cursor
        self._url = url
        self._driver_error = driver_error
        self._translate = translate
        self._rewrite = rewrite
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement with ``?`` placeholders."""
        try:
            self._cur.execute(self._rewrite(sql), check_params(params))
        except self._driver_error as exc:
            raise self._translate(self._url, exc) from exc
        self.rowcount = self._cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows; ``rowcount`` is the total."""
        if not rows:
            self.rowcount = 0
            return
        try:
            # psycopg pipelines executemany; rowcount is the sum over all rows (also sqlite3).
            self._cur.executemany(self._rewrite(sql), [check_params(r) for r in rows])
        except self._driver_error as exc:
            raise self._translate(self._url, exc) from exc
        self.rowcount = self._cur.rowcount

    def one(self) -> Row | None:
        """Next result row of the last statement, or None."""
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def all(self) -> list[Row]:
        """Remaining result rows of the last statement."""
        return [tuple(r) for r in self._cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few SQL differences between the backends."""

    name: str  # "postgresql" or "sqlite"
    share_lock: str  # row lock suffix blocking concurrent claims while an update is stored
    update_lock: str  # row lock suffix for read-then-write in one transaction
    migrations_table_exists: str  # query returning a row iff schema_migrations exists


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_params(params: Sequence[Any]) -> tuple[Any, ...]:
    """Refuse values one backend would store and the other reject, with the same ValueError:
    text with NUL or unencodable surrogates (PostgreSQL text is UTF-8 without NUL) and integers
    outside 64 bits. Keeps the two backends' contract identical for untrusted edge input."""
    for p in params:
        if isinstance(p, str):
            if "\x00" in p:
                raise ValueError(f"text must not contain NUL: {p[:40]!r}")
            try:
                p.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"text is not valid Unicode: {p[:40]!r}") from exc
        elif isinstance(p, int) and not isinstance(p, bool) and not INT64_MIN <= p <= INT64_MAX:
            raise ValueError(f"integer {p} does not fit in 64 bits")
    return tuple(params)


def dumps(obj: Mapping[str, Any] | Sequence[Any] | None, default: str = "{}") -> str:
    """JSON text of ``obj`` (sorted keys, compact)."""
    if obj is None:
        return default
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """Decoded JSON (empty dict for NULL)."""
    return {} if text is None else json.loads(text)


def metric_value(name: str, value: float) -> float | None:
    """A metric as stored: NaN -> NULL; infinities and non-numbers raise ValueError."""
    val = float(value)
    if math.isnan(val):
        return None
    if math.isinf(val):
        raise ValueError(f"metric {name!r} is infinite")
    return val


class SqlStoreBase(ABC):
    """Base of the SQL backends: clock, transactions and schema handling.

    Parameters
    ----------
    url : str
        Store URL (kept without password).
    clock : callable, optional
        Returns Unix seconds; ``time.time`` by default (tests inject a fake clock). Aggregator
        replicas sharing a database need synchronised clocks (leases are many seconds).
    """

    dialect: Dialect

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        self._url = url
        self._clock: Callable[[], float] = clock or time.time

    @property
    def url(self) -> str:
        """The store URL without password."""
        return self._url

    @abstractmethod
    def _tx(self, *, write: bool) -> AbstractContextManager[Tx]:
        """A transaction: committed when the block exits normally, rolled back on error."""

    def _migration_lock(self, tx: Tx) -> None:
        """Serialise concurrent migrators (PostgreSQL: advisory lock); no-op by default."""
        del tx

    def _select_in(
        self, tx: Tx, sql: str, values: Sequence[Any], before: Sequence[Any] = ()
    ) -> list[Row]:
        """Rows of ``sql`` whose ``{in}`` is a membership test in ``values`` (``before`` binds
        the ``?`` ahead of it): here ``IN (?, ...)`` in parts of 500 values (SQLite's
        bound-parameter limit), the parts' rows concatenated. PostgreSQL binds one array."""
        out: list[Row] = []
        for start in range(0, len(values), 500):
            part = list(values[start : start + 500])
            tx.execute(sql.replace("{in}", f"IN ({', '.join('?' * len(part))})"), [*before, *part])
            out += tx.all()
        return out

    def _insert_returning(
        self, tx: Tx, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Row],
        suffix: str,
    ) -> list[Row]:  # fmt: skip
        """Insert ``rows`` into ``table`` and return the rows of ``suffix``'s ``RETURNING``.

        ``columns`` are (name, PostgreSQL type) pairs; here multi-row ``VALUES`` in parts of
        500 rows (SQLite's bound-parameter limit). PostgreSQL overrides :meth:`_insert_rows`
        with one statement.
        """
        return self._insert_rows(tx, table, columns, rows, suffix, fetch=True)

    def _insert_rows(
        self, tx: Tx, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Row],
        suffix: str, *, fetch: bool,
    ) -> list[Row]:  # fmt: skip
        """:meth:`_insert_returning`, or with ``fetch`` False a ``suffix`` without
        ``RETURNING`` (an upsert's ``ON CONFLICT``): a few statements for any row count."""
        names = ", ".join(c for c, _ in columns)
        out: list[Row] = []
        for part in chunks(rows, 500):
            marks = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * len(part))
            tx.execute(
                f"INSERT INTO {table} ({names}) VALUES {marks} {suffix}",  # noqa: S608 - names are our constants
                [v for row in part for v in row],
            )
            if fetch:
                out += tx.all()
        return out

    @abstractmethod
    def close(self) -> None:
        """Release connections (idempotent)."""

    def __enter__(self) -> SqlStoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------------------
    def _read_version(self, tx: Tx) -> int:
        tx.execute(self.dialect.migrations_table_exists)
        if tx.one() is None:
            return 0
        tx.execute("SELECT MAX(version) FROM schema_migrations")
        row = tx.one()
        return int(row[0]) if row and row[0] is not None else 0

    def schema_version(self) -> int:
        """Schema version applied to the database (0 for an empty database)."""
        with self._tx(write=False) as tx:
            return self._read_version(tx)

    def _apply_policy(self, policy: str) -> None:
        """Apply pending migrations or check the version, as asked at open."""
        if policy not in SCHEMA_POLICIES:
            raise ValueError(f"schema policy must be one of {SCHEMA_POLICIES}, got {policy!r}")
        if policy == "upgrade":
            self.upgrade_schema()
        elif policy == "check":
            found = self.schema_version()
            if found != latest_version():
                raise SchemaVersionError(
                    found, latest_version(), "run `medchain db upgrade --store URL`"
                )

    def upgrade_schema(self, target: int | None = None) -> list[int]:
        """Apply pending migrations up to ``target`` (latest by default), one transaction each.

        Returns the versions applied (empty when up to date). Raises SchemaVersionError when the
        database is newer than this code: running old code on a new schema could corrupt it.
        """
        target = latest_version() if target is None else target
        applied: list[int] = []
        for mig in migrations():
            if mig.version > target:
                break
            with self._tx(write=True) as tx:
                self._migration_lock(tx)
                tx.execute(render(MIGRATIONS_TABLE_SQL, self.dialect.name)[0])
                current = self._read_version(tx)
                if current > latest_version():
                    raise SchemaVersionError(
                        current, latest_version(), "upgrade MedChain before using this database"
                    )
                if current >= mig.version:
                    continue
                for stmt in render(mig.sql, self.dialect.name):
                    tx.execute(stmt)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (mig.version, mig.name, self._clock()),
                )
                applied.append(mig.version)
                _LOGGER.info("store %s: applied migration %04d_%s", self.url, mig.version, mig.name)
        if not applied:
            # Still refuse a newer schema when nothing was pending.
            current = self.schema_version()
            if current > latest_version():
                raise SchemaVersionError(
                    current, latest_version(), "upgrade MedChain before using this database"
                )
        return applied


def chunks(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    """Split parameter rows into batches of at most ``size`` rows."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
