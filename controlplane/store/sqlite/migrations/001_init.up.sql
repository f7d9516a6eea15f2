-- Initial schema. Times are INTEGER microseconds since the Unix epoch (UTC);
-- NULL stands for "none" (not revoked, no expiry). Lists and maps are JSON
-- text. Every org-owned table carries org_id, and references between org-owned
-- tables include it, so a row can only point inside its own org.

CREATE TABLE orgs (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at);

CREATE TABLE enrollment_secrets (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX enrollment_secrets_org_idx ON enrollment_secrets (org_id, created_at);

CREATE TABLE users (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    -- Lower-cased by the store, so uniqueness is case-insensitive.
    email      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, email),
    UNIQUE (org_id, id)
) STRICT;

CREATE TABLE devices (
    id                 TEXT    NOT NULL PRIMARY KEY,
    org_id             TEXT    NOT NULL REFERENCES orgs (id),
    user_id            TEXT,
    hostname           TEXT    NOT NULL,
    os                 TEXT    NOT NULL,
    os_version         TEXT    NOT NULL,
    arch               TEXT    NOT NULL,
    serial             TEXT    NOT NULL,
    agent_version      TEXT    NOT NULL,
    enforcers          TEXT    NOT NULL DEFAULT '[]',
    unsupported        TEXT    NOT NULL DEFAULT '{}',
    cert_serial        TEXT    NOT NULL DEFAULT '',
    cert_not_after     INTEGER,
    created_at         INTEGER NOT NULL,
    last_seen_at       INTEGER,
    connected          INTEGER NOT NULL DEFAULT 0,
    lock_state         TEXT    NOT NULL DEFAULT 'unknown',
    enforcement_active INTEGER NOT NULL DEFAULT 0,
    last_applied_seq   INTEGER NOT NULL DEFAULT 0,
    -- The highest command sequence allocated to the device.
    last_seq           INTEGER NOT NULL DEFAULT 0,
    revoked_at         INTEGER,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
) STRICT;

CREATE INDEX devices_org_user_idx ON devices (org_id, user_id);

-- One live device per serial in an org; a revoked machine may enroll again.
CREATE UNIQUE INDEX devices_org_serial_live_idx ON devices (org_id, serial)
    WHERE serial <> '' AND revoked_at IS NULL;

CREATE TABLE lockouts (
    id              TEXT    NOT NULL PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    user_id         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'overridden')),
    triggered_by    TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    overridden_at   INTEGER,
    override_reason TEXT    NOT NULL DEFAULT '',
    override_actor  TEXT    NOT NULL DEFAULT '',
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
) STRICT;

-- At most one open lockout per user: CreateLockout relies on it.
CREATE UNIQUE INDEX lockouts_open_user_idx ON lockouts (org_id, user_id)
    WHERE state = 'open';

CREATE TABLE commands (
    org_id       TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    kind         TEXT    NOT NULL,
    lockout_id   TEXT,
    signed       BLOB    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'applied', 'rejected')),
    reason       TEXT    NOT NULL DEFAULT '',
    detail       TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    delivered_at INTEGER,
    acked_at     INTEGER,
    PRIMARY KEY (org_id, device_id, seq),
    FOREIGN KEY (org_id, device_id) REFERENCES devices (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX commands_lockout_idx ON commands (org_id, lockout_id) WHERE lockout_id IS NOT NULL;
CREATE INDEX commands_state_idx ON commands (state);

CREATE TABLE policies (
    org_id     TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    version    INTEGER NOT NULL CHECK (version > 0),
    domains    TEXT    NOT NULL,
    cidrs      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
