-- Schema v6: an event label names its event. Labels were keyed by (client, target, start
-- time), so two events starting on the same beat (a VT run and a tachycardia episode) shared
-- one label: the second clinician label silently replaced the first. event_id is '' for beat
-- labels; labels stored before take their event's id where exactly one event starts there.
CREATE TABLE clinician_label_v6 (
    label_id    TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    target      TEXT NOT NULL CHECK (target IN ('beat', 'event')),
    t_ns        {{BIGINT}} NOT NULL,
    event_id    TEXT NOT NULL DEFAULT '',
    label       TEXT NOT NULL,
    author      TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged')),
    created_at  {{DOUBLE}} NOT NULL,
    updated_at  {{DOUBLE}} NOT NULL,
    UNIQUE (client_id, target, t_ns, event_id)
);
INSERT INTO clinician_label_v6
    (label_id, client_id, target, t_ns, event_id, label, author, note, state, created_at,
     updated_at)
SELECT label_id, client_id, target, t_ns,
       CASE WHEN target = 'event' AND (SELECT COUNT(*) FROM edge_event e
                                       WHERE e.client_id = l.client_id
                                         AND e.t_start_ns = l.t_ns) = 1
            THEN (SELECT e.event_id FROM edge_event e
                  WHERE e.client_id = l.client_id AND e.t_start_ns = l.t_ns)
            ELSE '' END,
       label, author, note, state, created_at, updated_at
FROM clinician_label l;
DROP TABLE clinician_label;
ALTER TABLE clinician_label_v6 RENAME TO clinician_label;
CREATE INDEX clinician_label_client_state ON clinician_label (client_id, state, created_at);
