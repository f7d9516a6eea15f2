-- Each lockout's signed audit snapshot, kept from rendering until (and
-- after) it is in the write-once store. Rows are never deleted; the upload
-- columns are set once.
CREATE TABLE snapshots (
    org_id          text        NOT NULL,
    id              text        NOT NULL,
    lockout_id      text        NOT NULL,
    pdf             bytea       NOT NULL,
    sha256          bytea       NOT NULL CHECK (length(sha256) = 32),
    timestamp_token bytea       NOT NULL,
    created_at      timestamptz NOT NULL,
    object_key      text        NOT NULL DEFAULT '',
    version_id      text        NOT NULL DEFAULT '',
    retain_until    timestamptz,
    uploaded_at     timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, lockout_id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE FUNCTION snapshots_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'snapshots are append-only';
    END IF;
    IF NEW.pdf IS DISTINCT FROM OLD.pdf OR NEW.sha256 IS DISTINCT FROM OLD.sha256
       OR NEW.timestamp_token IS DISTINCT FROM OLD.timestamp_token OR NEW.lockout_id IS DISTINCT FROM OLD.lockout_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at OR OLD.uploaded_at IS NOT NULL THEN
        RAISE EXCEPTION 'snapshots are append-only: only the upload is recorded, once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER snapshots_guard BEFORE UPDATE OR DELETE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION snapshots_guard();
CREATE TRIGGER snapshots_no_truncate BEFORE TRUNCATE ON snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION snapshots_guard();

-- The application may add a snapshot and record its upload; never delete.
GRANT SELECT, INSERT, UPDATE (object_key, version_id, retain_until, uploaded_at) ON snapshots TO toktra_app;
ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE snapshots FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON snapshots
    USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id());
