-- Schema v1: federated learning state (model versions, rounds, client updates, metrics, clients).
-- Portable SQL for PostgreSQL and SQLite; {{ID}}, {{BLOB}}, {{DOUBLE}}, {{BIGINT}} are replaced
-- per dialect (see cloud_aggregator/store/migrate.py). Times are Unix seconds (DOUBLE).

CREATE TABLE model_version (
    version      {{ID}},
    parent       {{BIGINT}} REFERENCES model_version (version),
    round_id     {{BIGINT}},
    sha256       TEXT NOT NULL,
    size_bytes   {{BIGINT}} NOT NULL,
    format       TEXT NOT NULL,
    metrics      TEXT NOT NULL DEFAULT '{}',
    card         TEXT NOT NULL DEFAULT '{}',
    blob         {{BLOB}} NOT NULL,
    created_at   {{DOUBLE}} NOT NULL
);
CREATE INDEX model_version_sha256 ON model_version (sha256);

CREATE TABLE fl_round (
    round_id          {{ID}},
    task              TEXT NOT NULL,
    strategy          TEXT NOT NULL,
    config            TEXT NOT NULL DEFAULT '{}',
    state             TEXT NOT NULL CHECK (state IN ('open', 'aggregating', 'closed', 'failed')),
    base_version      {{BIGINT}} REFERENCES model_version (version),
    result_version    {{BIGINT}} REFERENCES model_version (version),
    quorum            INTEGER NOT NULL CHECK (quorum >= 1),
    deadline          {{DOUBLE}} NOT NULL,
    selected_clients  TEXT NOT NULL DEFAULT '[]',
    opened_at         {{DOUBLE}} NOT NULL,
    claimed_at        {{DOUBLE}},
    closed_at         {{DOUBLE}},
    claimed_by        TEXT,
    claim_expires_at  {{DOUBLE}},
    claim_count       INTEGER NOT NULL DEFAULT 0,
    failure_reason    TEXT NOT NULL DEFAULT ''
);
-- At most one round in flight per task, even with several aggregator replicas.
CREATE UNIQUE INDEX fl_round_one_active_per_task ON fl_round (task)
    WHERE state IN ('open', 'aggregating');

CREATE TABLE client_update (
    update_id    TEXT PRIMARY KEY,
    round_id     {{BIGINT}} NOT NULL REFERENCES fl_round (round_id),
    client_id    TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    size_bytes   {{BIGINT}} NOT NULL,
    n_samples    {{BIGINT}} NOT NULL CHECK (n_samples >= 1),
    metrics      TEXT NOT NULL DEFAULT '{}',
    blob         {{BLOB}} NOT NULL,
    received_at  {{DOUBLE}} NOT NULL,
    UNIQUE (round_id, client_id)
);

CREATE TABLE rejected_update (
    reject_id    {{ID}},
    update_id    TEXT NOT NULL,
    round_id     {{BIGINT}} NOT NULL,
    client_id    TEXT NOT NULL,
    reason       TEXT NOT NULL,
    sha256       TEXT NOT NULL DEFAULT '',
    size_bytes   {{BIGINT}} NOT NULL DEFAULT 0,
    received_at  {{DOUBLE}} NOT NULL
);
CREATE INDEX rejected_update_round ON rejected_update (round_id);

-- client_id '' holds the round-level value. NULL value = NaN (SQLite cannot store NaN).
CREATE TABLE round_metric (
    round_id   {{BIGINT}} NOT NULL REFERENCES fl_round (round_id),
    client_id  TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL,
    value      {{DOUBLE}},
    PRIMARY KEY (round_id, client_id, name)
);

CREATE TABLE client (
    client_id         TEXT PRIMARY KEY,
    credentials_hash  TEXT NOT NULL DEFAULT '',
    task              TEXT NOT NULL DEFAULT '',
    dataset           TEXT NOT NULL DEFAULT '',
    online            INTEGER NOT NULL DEFAULT 0,
    last_seen         {{DOUBLE}},
    model_version     TEXT NOT NULL DEFAULT '',
    registered_at     {{DOUBLE}} NOT NULL
);
