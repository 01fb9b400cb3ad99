-- Schema v2: data from the edge (predictions, events), clinician labels, web accounts,
-- patient tokens, training control and the audit log.

CREATE TABLE prediction (
    client_id      TEXT NOT NULL,
    t_ns           {{BIGINT}} NOT NULL,
    sample         {{BIGINT}} NOT NULL,
    label          TEXT NOT NULL,
    probs          TEXT NOT NULL DEFAULT '{}',
    model_version  TEXT NOT NULL DEFAULT '',
    rr_s           {{DOUBLE}},
    received_at    {{DOUBLE}} NOT NULL,
    PRIMARY KEY (client_id, t_ns)
);

CREATE TABLE edge_event (
    event_id     TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    t_start_ns   {{BIGINT}} NOT NULL,
    t_end_ns     {{BIGINT}} NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    received_at  {{DOUBLE}} NOT NULL
);
CREATE INDEX edge_event_client_time ON edge_event (client_id, t_start_ns);

CREATE TABLE clinician_label (
    label_id    TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    target      TEXT NOT NULL CHECK (target IN ('beat', 'event')),
    t_ns        {{BIGINT}} NOT NULL,
    label       TEXT NOT NULL,
    author      TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged')),
    created_at  {{DOUBLE}} NOT NULL,
    updated_at  {{DOUBLE}} NOT NULL,
    UNIQUE (client_id, target, t_ns)
);
CREATE INDEX clinician_label_client_state ON clinician_label (client_id, state, created_at);

CREATE TABLE app_user (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    active         INTEGER NOT NULL DEFAULT 1,
    created_at     {{DOUBLE}} NOT NULL
);

CREATE TABLE patient_token (
    token_hash  TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  {{DOUBLE}} NOT NULL,
    expires_at  {{DOUBLE}},
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX patient_token_client ON patient_token (client_id);

-- A single row (id = 1): the desired training state.
CREATE TABLE training_control (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    desired     TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
    task        TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    dataset     TEXT NOT NULL DEFAULT '',
    rounds      INTEGER NOT NULL DEFAULT 0,
    config      TEXT NOT NULL DEFAULT '{}',
    updated_by  TEXT NOT NULL DEFAULT '',
    updated_at  {{DOUBLE}} NOT NULL,
    generation  {{BIGINT}} NOT NULL
);

CREATE TABLE audit_log (
    entry_id    {{ID}},
    created_at  {{DOUBLE}} NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL DEFAULT '',
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor, entry_id);
