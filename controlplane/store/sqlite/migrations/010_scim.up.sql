-- SCIM 2.0 provisioning: each org's bearer token (by hash), the users and
-- groups its SCIM client provisions, and the groups' members. Times are
-- INTEGER microseconds (UTC), NULL meaning none; JSON is text, checked valid.

CREATE TABLE scim_tokens (
    -- One token per org: rotating replaces the row.
    org_id       TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    id           TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         BLOB    NOT NULL UNIQUE,
    hint         TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

CREATE TABLE scim_users (
    id              TEXT    NOT NULL PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    -- The Toktra user linked by email at creation.
    user_id         TEXT    NOT NULL,
    user_name       TEXT    NOT NULL,
    -- user_name lower-cased by the store (Go's Unicode folding, the same
    -- in both dialects): the key of uniqueness and filters.
    user_name_key   TEXT    NOT NULL,
    external_id     TEXT    NOT NULL DEFAULT '',
    -- Lower-cased email values, for filters (a JSON array of strings).
    emails          TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(emails)),
    active          INTEGER NOT NULL,
    -- The accepted SCIM attributes (never the password).
    attributes      TEXT    NOT NULL CHECK (json_valid(attributes)),
    version         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deactivated_at  INTEGER,
    reactivated_at  INTEGER,
    lockout_id      TEXT,
    locked_at       INTEGER,
    deleted_at      INTEGER,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT;

-- userName is unique per org among users not deleted, case-insensitively.
CREATE UNIQUE INDEX scim_users_org_user_name_idx ON scim_users (org_id, user_name_key)
    WHERE deleted_at IS NULL;
CREATE INDEX scim_users_org_external_id_idx ON scim_users (org_id, external_id)
    WHERE external_id <> '';
CREATE INDEX scim_users_org_created_idx ON scim_users (org_id, created_at, id);

CREATE TABLE scim_groups (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    display_name TEXT    NOT NULL,
    display_name_key TEXT  NOT NULL,
    external_id  TEXT    NOT NULL DEFAULT '',
    attributes   TEXT    NOT NULL CHECK (json_valid(attributes)),
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (org_id, id)
) STRICT;

CREATE UNIQUE INDEX scim_groups_org_display_name_idx ON scim_groups (org_id, display_name_key);
CREATE INDEX scim_groups_org_created_idx ON scim_groups (org_id, created_at, id);

CREATE TABLE scim_group_members (
    org_id       TEXT    NOT NULL,
    group_id     TEXT    NOT NULL,
    scim_user_id TEXT    NOT NULL,
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, group_id, scim_user_id),
    FOREIGN KEY (org_id, group_id) REFERENCES scim_groups (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, scim_user_id) REFERENCES scim_users (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX scim_group_members_user_idx ON scim_group_members (org_id, scim_user_id);
