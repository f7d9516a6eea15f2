-- The lockout pipeline: each step's progress, each provider's revocation,
-- every trigger that asked for a lockout, and the orgs' provider
-- connections. Times are INTEGER microseconds (UTC), NULL meaning none; JSON
-- is text, checked to be valid so both dialects refuse the same values.
-- References include org_id, so a row can only point inside its own org.

CREATE TABLE lockout_steps (
    org_id      TEXT    NOT NULL,
    lockout_id  TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    -- The order the steps were initialized in (ListLockoutSteps sorts by it).
    position    INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'done', 'unconfirmed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT    NOT NULL DEFAULT '',
    started_at  INTEGER,
    finished_at INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, lockout_id, step),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE provider_revocations (
    org_id       TEXT    NOT NULL,
    lockout_id   TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'confirmed', 'unconfirmed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    confirmation TEXT    CHECK (confirmation IS NULL OR json_valid(confirmation)),
    last_error   TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (org_id, lockout_id, provider),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE lockout_triggers (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT    NOT NULL,
    lockout_id TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    evidence   TEXT    CHECK (evidence IS NULL OR json_valid(evidence)),
    at         INTEGER NOT NULL,
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT;

CREATE INDEX lockout_triggers_lockout_idx ON lockout_triggers (org_id, lockout_id, at, id);

CREATE TABLE provider_connections (
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    provider     TEXT    NOT NULL,
    -- The admin key, envelope-encrypted by the caller; never plaintext.
    sealed_key   BLOB    NOT NULL,
    key_hint     TEXT    NOT NULL DEFAULT '',
    base_url     TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    validated_at INTEGER,
    PRIMARY KEY (org_id, provider)
) STRICT, WITHOUT ROWID;

-- ListLockoutsPage walks an org's lockouts newest first by (created_at, id).
CREATE INDEX lockouts_org_created_idx ON lockouts (org_id, created_at, id);
