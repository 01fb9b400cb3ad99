"""The edge buffer's SQLite tables (:mod:`edge_agent.buffer`), and the upgrade of older files.

``outbox``: predictions and events waiting for the store (``state``: pending, inflight, sent,
stored, rejected; ``batch`` and ``sent_at`` track a payload until the store's receipt).
``recent_beats``: the model inputs of the newest beats, for clinician labels that come later.
``labelled_beats``: labelled beats with their inputs, the device's training data.
"""

from __future__ import annotations

import sqlite3

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
