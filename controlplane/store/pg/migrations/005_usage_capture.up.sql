-- The departing user's usage at each provider, captured before revocation
-- (providers drop a removed user's identity from their usage data).
CREATE TABLE usage_captures (
    org_id      text        NOT NULL,
    lockout_id  text        NOT NULL,
    provider    text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('pending', 'captured', 'failed')),
    attempts    integer     NOT NULL DEFAULT 0,
    window_from timestamptz NOT NULL,
    window_to   timestamptz NOT NULL,
    capture     jsonb,
    last_error  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, lockout_id, provider),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

-- Tenant isolation as for every org table (see 004_rls).
GRANT SELECT, INSERT, UPDATE ON usage_captures TO toktra_app;
ALTER TABLE usage_captures ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_captures FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON usage_captures
    USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id());
