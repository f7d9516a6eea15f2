-- The lockout pipeline: each step's progress, each provider's revocation,
-- every trigger that asked for a lockout, and the orgs' provider
-- connections. Times are timestamptz, NULL meaning none; JSON is jsonb.
-- References include org_id, so a row can only point inside its own org.

CREATE TABLE lockout_steps (
    org_id      text        NOT NULL,
    lockout_id  text        NOT NULL,
    step        text        NOT NULL,
    -- The order the steps were initialized in (ListLockoutSteps sorts by it).
    position    integer     NOT NULL,
    state       text        NOT NULL CHECK (state IN ('pending', 'running', 'done', 'unconfirmed')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text        NOT NULL DEFAULT '',
    started_at  timestamptz,
    finished_at timestamptz,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, lockout_id, step),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE TABLE provider_revocations (
    org_id       text        NOT NULL,
    lockout_id   text        NOT NULL,
    provider     text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('pending', 'confirmed', 'unconfirmed')),
    attempts     integer     NOT NULL DEFAULT 0,
    confirmation jsonb,
    last_error   text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, lockout_id, provider),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE TABLE lockout_triggers (
    id         bigserial   PRIMARY KEY,
    org_id     text        NOT NULL,
    lockout_id text        NOT NULL,
    source     text        NOT NULL,
    evidence   jsonb,
    at         timestamptz NOT NULL,
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

CREATE INDEX lockout_triggers_lockout_idx ON lockout_triggers (org_id, lockout_id, at, id);

CREATE TABLE provider_connections (
    org_id       text        NOT NULL REFERENCES orgs (id),
    provider     text        NOT NULL,
    -- The admin key, envelope-encrypted by the caller; never plaintext.
    sealed_key   bytea       NOT NULL,
    key_hint     text        NOT NULL DEFAULT '',
    base_url     text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    validated_at timestamptz,
    PRIMARY KEY (org_id, provider)
);

-- ListLockoutsPage walks an org's lockouts newest first by (created_at, id).
CREATE INDEX lockouts_org_created_idx ON lockouts (org_id, created_at, id);
