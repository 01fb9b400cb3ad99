-- Schema v4: a session generation per clinician user and per patient access code. The web puts
-- the generation into each session cookie and refuses an older one, so log-out and a password
-- change end every copy of a session (signed cookies alone cannot be revoked).

ALTER TABLE app_user ADD COLUMN session_generation {{BIGINT}} NOT NULL DEFAULT 0;
ALTER TABLE patient_token ADD COLUMN session_generation {{BIGINT}} NOT NULL DEFAULT 0;
