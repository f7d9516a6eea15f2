-- The audit log: one hash chain per org (see store.AuditHash). Entries are
-- only ever inserted: the triggers below refuse UPDATE and DELETE in the
-- database itself, whatever the code above it does. Appends are serialized
-- by SQLite's single writer, so an org's chain never forks; the primary key
-- would refuse a fork anyway.

CREATE TABLE audit_log (
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    seq         INTEGER NOT NULL CHECK (seq > 0),
    id          TEXT    NOT NULL UNIQUE,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    -- The exact compact JSON that was hashed.
    detail      TEXT    NOT NULL,
    remote_ip   TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, seq)
) STRICT;

CREATE INDEX audit_log_actor_idx ON audit_log (org_id, actor, seq);
CREATE INDEX audit_log_action_idx ON audit_log (org_id, action, seq);
CREATE INDEX audit_log_target_idx ON audit_log (org_id, target_type, target_id, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
