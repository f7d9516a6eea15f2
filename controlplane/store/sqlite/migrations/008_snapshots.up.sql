-- Each lockout's signed audit snapshot, kept from rendering until (and
-- after) it is in the write-once store. Rows are never deleted; the upload
-- columns are set once.
CREATE TABLE snapshots (
    org_id          TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    lockout_id      TEXT    NOT NULL,
    pdf             BLOB    NOT NULL,
    sha256          BLOB    NOT NULL CHECK (length(sha256) = 32),
    timestamp_token BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    object_key      TEXT    NOT NULL DEFAULT '',
    version_id      TEXT    NOT NULL DEFAULT '',
    retain_until    INTEGER,
    uploaded_at     INTEGER,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, lockout_id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT;

CREATE TRIGGER snapshots_no_delete BEFORE DELETE ON snapshots
BEGIN
    SELECT RAISE(ABORT, 'snapshots are append-only');
END;

CREATE TRIGGER snapshots_evidence_fixed BEFORE UPDATE ON snapshots
WHEN NEW.pdf IS NOT OLD.pdf OR NEW.sha256 IS NOT OLD.sha256 OR NEW.timestamp_token IS NOT OLD.timestamp_token
  OR NEW.lockout_id IS NOT OLD.lockout_id OR NEW.created_at IS NOT OLD.created_at
  OR (OLD.uploaded_at IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'snapshots are append-only: only the upload is recorded, once');
END;
