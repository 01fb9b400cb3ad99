"""``open_store(url)``: pick the backend from the URL, as MLflow and Flower do.

===============================================  ==========================================
URL                                              backend
===============================================  ==========================================
``sqlite:///relative/file.db``                   SQLite file relative to the working folder
``sqlite:////absolute/file.db``                  SQLite file, absolute path
``sqlite://`` or ``sqlite:///:memory:``          SQLite in memory (tests, throw-away demos)
``sqlite:///file.db?synchronous=normal``         faster commits; the last ones may be lost on
                                                 power loss (default ``full``)
``postgresql://user:pw@host:5432/db?schema=s``   PostgreSQL; ``schema`` sets the search_path,
                                                 ``pool_min``/``pool_max`` size the pool;
                                                 other query parameters go to libpq
===============================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from store.base import Store
from store.errors import StoreURLError, redact_url

DEFAULT_URL = "sqlite:///medchain.db"
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_OUR_PG_PARAMS = ("schema", "pool_min", "pool_max")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Settings of the store (env ``MEDCHAIN_STORE_URL`` etc. via ``load_settings``)."""

    url: str = DEFAULT_URL
    connect_timeout_s: float = 5.0
    statement_timeout_s: float = 30.0
    pool_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A store URL split into backend, location and our own options."""

    backend: str  # "sqlite" or "postgresql"
    location: str  # SQLite path, or the libpq conninfo URL without our options
    schema: str | None = None
    pool_min: int = 1
    pool_max: int = 8
    sqlite_synchronous: str = "FULL"


def parse_store_url(url: str) -> ParsedURL:
    """Split a store URL; StoreURLError when it is malformed or unsupported."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreURLError(f"malformed store URL {redact_url(url)!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise StoreURLError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db"
            )
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise StoreURLError(f"unknown SQLite URL options {sorted(unknown)} in {url!r}")
        sync = options.get("synchronous", "full").upper()
        if sync not in ("FULL", "NORMAL"):
            raise StoreURLError(f"synchronous must be full or normal in {url!r}")
        return ParsedURL("sqlite", path or ":memory:", sqlite_synchronous=sync)
    if scheme in _PG_SCHEMES:
        if not parts.path.strip("/"):
            raise StoreURLError(f"PostgreSQL URL {redact_url(url)!r} names no database")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OUR_PG_PARAMS}
        rest = [(k, v) for k, v in query if k not in _OUR_PG_PARAMS]
        try:
            pool_min = int(ours.get("pool_min", "1"))
            pool_max = int(ours.get("pool_max", "8"))
        except ValueError as exc:
            raise StoreURLError(f"bad pool size in {redact_url(url)!r}") from exc
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise StoreURLError(f"need 0 <= pool_min <= pool_max, >= 1 in {redact_url(url)!r}")
        location = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
        return ParsedURL("postgresql", location, ours.get("schema") or None, pool_min, pool_max)
    raise StoreURLError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///file.db or postgresql://..."
    )


def open_store(
    url: str,
    *,
    schema: str = "upgrade",
    clock: Callable[[], float] | None = None,
    settings: StoreSettings | None = None,
) -> Store:
    """Open the store named by ``url``.

    Parameters
    ----------
    url : str
        See the module docstring.
    schema : {"upgrade", "check", "ignore"}
        Apply pending migrations (default; services do this on start), only check that the
        schema is current (SchemaVersionError otherwise), or skip the check (``db status``).
        A database newer than this code is always refused under "upgrade" and "check".
    clock : callable, optional
        Unix seconds (tests inject a fake clock).
    settings : StoreSettings, optional
        Timeouts (s).

    Raises
    ------
    StoreURLError, StoreUnavailableError, SchemaVersionError
    """
    parsed = parse_store_url(url)
    settings = settings or StoreSettings(url=url)
    if parsed.backend == "sqlite":
        from store.sqlite import SqliteStore

        return SqliteStore(
            parsed.location,
            url=redact_url(url),
            clock=clock,
            schema=schema,
            busy_timeout_s=settings.statement_timeout_s,
            synchronous=parsed.sqlite_synchronous,
        )
    from store.postgres import PostgresStore

    return PostgresStore(
        parsed.location,
        url=redact_url(url),
        search_path=parsed.schema,
        clock=clock,
        schema=schema,
        min_size=parsed.pool_min,
        max_size=parsed.pool_max,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
        pool_timeout_s=settings.pool_timeout_s,
    )
