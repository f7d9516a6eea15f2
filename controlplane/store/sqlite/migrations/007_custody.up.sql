-- The chain of custody (package custody): evidence nodes in one append-only
-- log per org, each node's RFC 3161 token, and signed checkpoints of the log.
-- Rows are only ever inserted: the triggers below refuse UPDATE and DELETE
-- in the database file itself. A node's token lives in its own table so
-- that "not yet stamped" is the absence of a row, never a column to fill in
-- later; its primary key keeps the first token for good. Appends are
-- serialized by SQLite's single writer, so indexes have no gaps.

CREATE TABLE custody_nodes (
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    idx          INTEGER NOT NULL CHECK (idx >= 0),
    hash         BLOB    NOT NULL CHECK (length(hash) = 32),
    lockout_id   TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind <> ''),
    subject      TEXT    NOT NULL,
    -- The parents' hashes, concatenated (32 bytes each), in recorded order.
    parents      BLOB    NOT NULL CHECK (length(parents) % 32 = 0),
    payload_hash BLOB    NOT NULL CHECK (length(payload_hash) = 32),
    payload      BLOB    NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (org_id, idx),
    UNIQUE (org_id, hash),
    UNIQUE (org_id, lockout_id, kind, subject),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT;

CREATE INDEX custody_nodes_lockout_idx ON custody_nodes (org_id, lockout_id, idx);

CREATE TABLE custody_tokens (
    org_id     TEXT    NOT NULL,
    node_hash  BLOB    NOT NULL,
    token      BLOB    NOT NULL CHECK (length(token) > 0),
    gen_time   INTEGER NOT NULL,
    tsa        TEXT    NOT NULL,
    stamped_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, node_hash),
    FOREIGN KEY (org_id, node_hash) REFERENCES custody_nodes (org_id, hash)
) STRICT, WITHOUT ROWID;

CREATE TABLE custody_checkpoints (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    size       INTEGER NOT NULL CHECK (size >= 0),
    root_hash  BLOB    NOT NULL CHECK (length(root_hash) = 32),
    note       BLOB    NOT NULL,
    token      BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, size)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER custody_nodes_no_update BEFORE UPDATE ON custody_nodes
BEGIN
    SELECT RAISE(ABORT, 'custody_nodes is append-only: UPDATE refused');
END;
CREATE TRIGGER custody_nodes_no_delete BEFORE DELETE ON custody_nodes
BEGIN
    SELECT RAISE(ABORT, 'custody_nodes is append-only: DELETE refused');
END;
CREATE TRIGGER custody_tokens_no_update BEFORE UPDATE ON custody_tokens
BEGIN
    SELECT RAISE(ABORT, 'custody_tokens is append-only: UPDATE refused');
END;
CREATE TRIGGER custody_tokens_no_delete BEFORE DELETE ON custody_tokens
BEGIN
    SELECT RAISE(ABORT, 'custody_tokens is append-only: DELETE refused');
END;
CREATE TRIGGER custody_checkpoints_no_update BEFORE UPDATE ON custody_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'custody_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER custody_checkpoints_no_delete BEFORE DELETE ON custody_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'custody_checkpoints is append-only: DELETE refused');
END;
