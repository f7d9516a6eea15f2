-- The chain of custody (package custody): evidence nodes in one append-only
-- log per org, each node's RFC 3161 token, and signed checkpoints of the log.
-- Rows are only ever inserted: toktra_app has no UPDATE or DELETE privilege
-- on these tables, and triggers refuse UPDATE, DELETE and TRUNCATE to
-- everyone, whatever the code above does. A node's token lives in its own
-- table so that "not yet stamped" is the absence of a row, never a column
-- to fill in later; its primary key keeps the first token for good.
-- AppendCustodyNode serializes an org's appends with a transaction-scoped
-- advisory lock, so indexes have no gaps and never repeat.

CREATE TABLE custody_nodes (
    org_id       text        NOT NULL REFERENCES orgs (id),
    idx          bigint      NOT NULL CHECK (idx >= 0),
    hash         bytea       NOT NULL CHECK (octet_length(hash) = 32),
    lockout_id   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind <> ''),
    subject      text        NOT NULL,
    -- The parents' hashes, concatenated (32 bytes each), in recorded order.
    parents      bytea       NOT NULL CHECK (octet_length(parents) % 32 = 0),
    payload_hash bytea       NOT NULL CHECK (octet_length(payload_hash) = 32),
    payload      bytea       NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (org_id, idx),
    UNIQUE (org_id, hash),
    -- One node per evidence event: a retried job finds the first.
    UNIQUE (org_id, lockout_id, kind, subject),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE INDEX custody_nodes_lockout_idx ON custody_nodes (org_id, lockout_id, idx);

CREATE TABLE custody_tokens (
    org_id     text        NOT NULL,
    node_hash  bytea       NOT NULL,
    token      bytea       NOT NULL CHECK (octet_length(token) > 0),
    gen_time   timestamptz NOT NULL,
    tsa        text        NOT NULL,
    stamped_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, node_hash),
    FOREIGN KEY (org_id, node_hash) REFERENCES custody_nodes (org_id, hash)
);

CREATE TABLE custody_checkpoints (
    org_id     text        NOT NULL REFERENCES orgs (id),
    size       bigint      NOT NULL CHECK (size >= 0),
    root_hash  bytea       NOT NULL CHECK (octet_length(root_hash) = 32),
    note       bytea       NOT NULL,
    token      bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, size)
);

CREATE FUNCTION custody_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER custody_nodes_no_update_delete BEFORE UPDATE OR DELETE ON custody_nodes
    FOR EACH ROW EXECUTE FUNCTION custody_refuse_change();
CREATE TRIGGER custody_nodes_no_truncate BEFORE TRUNCATE ON custody_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change();
CREATE TRIGGER custody_tokens_no_update_delete BEFORE UPDATE OR DELETE ON custody_tokens
    FOR EACH ROW EXECUTE FUNCTION custody_refuse_change();
CREATE TRIGGER custody_tokens_no_truncate BEFORE TRUNCATE ON custody_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change();
CREATE TRIGGER custody_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON custody_checkpoints
    FOR EACH ROW EXECUTE FUNCTION custody_refuse_change();
CREATE TRIGGER custody_checkpoints_no_truncate BEFORE TRUNCATE ON custody_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION custody_refuse_change();

-- Tenant isolation as for every org table (see 004_rls); only SELECT and
-- INSERT, so the application cannot change or remove evidence even before
-- the triggers above would.
GRANT SELECT, INSERT ON custody_nodes TO toktra_app;
GRANT SELECT, INSERT ON custody_tokens TO toktra_app;
GRANT SELECT, INSERT ON custody_checkpoints TO toktra_app;
ALTER TABLE custody_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE custody_nodes FORCE ROW LEVEL SECURITY;
ALTER TABLE custody_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE custody_tokens FORCE ROW LEVEL SECURITY;
ALTER TABLE custody_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE custody_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON custody_nodes
    USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id());
CREATE POLICY org_isolation ON custody_tokens
    USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id());
CREATE POLICY org_isolation ON custody_checkpoints
    USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id());
