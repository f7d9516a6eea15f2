-- Initial schema. Times are timestamptz (microsecond precision); NULL stands
-- for "none" (not revoked, no expiry). Every org-owned table carries org_id,
-- references between org-owned tables include it (so a row can only point
-- inside its own org), and every query filters by it: Row-Level Security
-- policies on org_id can be added without reshaping anything.

CREATE TABLE orgs (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    org_id     text        NOT NULL REFERENCES orgs (id),
    name       text        NOT NULL,
    scope      text        NOT NULL,
    hash       bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at);

CREATE TABLE enrollment_secrets (
    id         text        PRIMARY KEY,
    org_id     text        NOT NULL REFERENCES orgs (id),
    name       text        NOT NULL,
    hash       bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX enrollment_secrets_org_idx ON enrollment_secrets (org_id, created_at);

CREATE TABLE users (
    id         text        PRIMARY KEY,
    org_id     text        NOT NULL REFERENCES orgs (id),
    -- Lower-cased by the store, so uniqueness is case-insensitive.
    email      text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (org_id, email),
    UNIQUE (org_id, id)
);

CREATE TABLE devices (
    id                 text        PRIMARY KEY,
    org_id             text        NOT NULL REFERENCES orgs (id),
    user_id            text,
    hostname           text        NOT NULL,
    os                 text        NOT NULL,
    os_version         text        NOT NULL,
    arch               text        NOT NULL,
    serial             text        NOT NULL,
    agent_version      text        NOT NULL,
    enforcers          jsonb       NOT NULL DEFAULT '[]',
    unsupported        jsonb       NOT NULL DEFAULT '{}',
    cert_serial        text        NOT NULL DEFAULT '',
    cert_not_after     timestamptz,
    created_at         timestamptz NOT NULL,
    last_seen_at       timestamptz,
    connected          boolean     NOT NULL DEFAULT false,
    lock_state         text        NOT NULL DEFAULT 'unknown',
    enforcement_active boolean     NOT NULL DEFAULT false,
    last_applied_seq   bigint      NOT NULL DEFAULT 0,
    -- The highest command sequence allocated to the device; InsertCommand
    -- increments it under the row lock, which serializes allocation across
    -- replicas.
    last_seq           bigint      NOT NULL DEFAULT 0,
    revoked_at         timestamptz,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
);

CREATE INDEX devices_org_user_idx ON devices (org_id, user_id);

-- One live device per serial in an org; a revoked machine may enroll again.
CREATE UNIQUE INDEX devices_org_serial_live_idx ON devices (org_id, serial)
    WHERE serial <> '' AND revoked_at IS NULL;

CREATE TABLE lockouts (
    id              text        PRIMARY KEY,
    org_id          text        NOT NULL REFERENCES orgs (id),
    user_id         text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('open', 'overridden')),
    triggered_by    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    overridden_at   timestamptz,
    override_reason text        NOT NULL DEFAULT '',
    override_actor  text        NOT NULL DEFAULT '',
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
);

-- At most one open lockout per user: CreateLockout relies on it.
CREATE UNIQUE INDEX lockouts_open_user_idx ON lockouts (org_id, user_id)
    WHERE state = 'open';

CREATE TABLE commands (
    org_id       text        NOT NULL,
    device_id    text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    kind         text        NOT NULL,
    lockout_id   text,
    signed       bytea       NOT NULL,
    state        text        NOT NULL CHECK (state IN ('pending', 'delivered', 'applied', 'rejected')),
    reason       text        NOT NULL DEFAULT '',
    detail       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    delivered_at timestamptz,
    acked_at     timestamptz,
    PRIMARY KEY (org_id, device_id, seq),
    FOREIGN KEY (org_id, device_id) REFERENCES devices (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE INDEX commands_lockout_idx ON commands (org_id, lockout_id) WHERE lockout_id IS NOT NULL;
CREATE INDEX commands_state_idx ON commands (state);

CREATE TABLE policies (
    org_id     text        PRIMARY KEY REFERENCES orgs (id),
    version    bigint      NOT NULL CHECK (version > 0),
    domains    jsonb       NOT NULL,
    cidrs      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);
