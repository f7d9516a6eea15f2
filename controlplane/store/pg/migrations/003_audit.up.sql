-- The audit log: one hash chain per org (see store.AuditHash). Entries are
-- only ever inserted: the triggers below refuse UPDATE, DELETE and TRUNCATE
-- in the database itself, whatever the code above it does. AppendAudit
-- serializes an org's appends with a transaction-scoped advisory lock, so
-- replicas never fork the chain; the primary key would refuse a fork anyway.
-- detail is text, not jsonb: the hash covers its exact bytes.

CREATE TABLE audit_log (
    org_id      text        NOT NULL REFERENCES orgs (id),
    seq         bigint      NOT NULL CHECK (seq > 0),
    id          text        NOT NULL UNIQUE,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target_type text        NOT NULL,
    target_id   text        NOT NULL,
    detail      text        NOT NULL,
    remote_ip   text        NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (org_id, seq)
);

CREATE INDEX audit_log_actor_idx ON audit_log (org_id, actor, seq);
CREATE INDEX audit_log_action_idx ON audit_log (org_id, action, seq);
CREATE INDEX audit_log_target_idx ON audit_log (org_id, target_type, target_id, seq);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
