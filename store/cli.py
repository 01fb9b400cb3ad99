"""``medchain db upgrade|status``: schema migrations of the store.

The store URL comes from ``--store``, else ``MEDCHAIN_STORE_URL``, else ``sqlite:///medchain.db``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from common.config import load_settings
from common.errors import ConfigError


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from store.factory import StoreSettings

    return load_settings(
        StoreSettings, env=env, prefix="MEDCHAIN_STORE", overrides={"url": args.store}
    )


def _upgrade(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from store.errors import redact_url
    from store.factory import open_store
    from store.migrate import latest_version

    if args.to is not None and not 1 <= args.to <= latest_version():
        raise ConfigError(f"--to {args.to}: schema versions are 1-{latest_version()}")
    settings = _settings(args, env)
    store = open_store(settings.url, schema="ignore", settings=settings)
    try:
        before = store.schema_version()
        applied = store.upgrade_schema(args.to)
        after = store.schema_version()
    finally:
        store.close()
    url = redact_url(settings.url)
    if applied:
        names = ", ".join(f"{v:04d}" for v in applied)
        print(f"{url}: schema {before} -> {after} (applied {names}; latest {latest_version()})")
    elif args.to is not None and args.to < after:
        print(f"{url}: schema {after} is past --to {args.to} (no downgrades)")
    else:
        print(f"{url}: schema {after} is up to date (latest {latest_version()})")
    return 0


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from store.errors import redact_url
    from store.factory import open_store
    from store.migrate import latest_version, migrations

    settings = _settings(args, env)
    store = open_store(settings.url, schema="ignore", settings=settings)
    try:
        current = store.schema_version()
    finally:
        store.close()
    latest = latest_version()
    print(f"store:   {redact_url(settings.url)}")
    print(f"schema:  {current} (this MedChain supports {latest})")
    for mig in migrations():
        mark = "applied" if mig.version <= current else "pending"
        print(f"  {mig.version:04d}_{mig.name}: {mark}")
    if current > latest:
        print("  database is NEWER than this code: upgrade MedChain before using it")
        return 1
    if current < latest:
        print("  run `medchain db upgrade` to apply the pending migrations")
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add the ``db`` command group."""
    db = subparsers.add_parser(
        "db",
        help="store schema migrations (upgrade, status)",
        description="Versioned schema migrations of the MedChain store (SQLite or PostgreSQL).",
    )
    sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    store_help = (
        "store URL: sqlite:///path.db, sqlite:////abs/path.db or "
        "postgresql://user:pw@host:5432/db[?schema=name] "
        "(default: $MEDCHAIN_STORE_URL or sqlite:///medchain.db)"
    )
    up = sub.add_parser(
        "upgrade",
        help="apply pending migrations",
        description="Apply pending schema migrations, each in its own transaction. Safe to run "
        "from several hosts at once (migrations take a lock) and while services run, but a "
        "service still running older code may fail on the new schema (v6 changed the labels' "
        "key): restart the services with this MedChain after upgrading. Refuses a database "
        "whose schema is newer than this MedChain.",
    )
    up.add_argument("--store", metavar="URL", default=None, help=store_help)
    up.add_argument(
        "--to",
        type=int,
        default=None,
        metavar="N",
        help="stop at schema version N (default: latest)",
    )
    up.set_defaults(func=_upgrade)
    st = sub.add_parser(
        "status",
        help="show the schema version and pending migrations",
        description="Show the applied schema version and each migration's state. Exit code 0 "
        "when up to date, 1 when migrations are pending or the database is newer.",
    )
    st.add_argument("--store", metavar="URL", default=None, help=store_help)
    st.set_defaults(func=_status)
