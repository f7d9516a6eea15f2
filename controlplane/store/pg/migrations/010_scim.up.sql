-- SCIM 2.0 provisioning: each org's bearer token (by hash), the users and
-- groups its SCIM client provisions, and the groups' members. Every table is
-- org-owned and isolated as in 004_rls; the token is found by hash across
-- orgs only through a SECURITY DEFINER function, as API keys are.

CREATE TABLE scim_tokens (
    -- One token per org: rotating replaces the row.
    org_id       text        PRIMARY KEY REFERENCES orgs (id),
    id           text        NOT NULL UNIQUE,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         bytea       NOT NULL UNIQUE,
    hint         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz
);

CREATE TABLE scim_users (
    id              text        PRIMARY KEY,
    org_id          text        NOT NULL REFERENCES orgs (id),
    -- The Toktra user linked by email at creation.
    user_id         text        NOT NULL,
    user_name       text        NOT NULL,
    -- user_name lower-cased by the store (Go's Unicode folding, the same
    -- in both dialects): the key of uniqueness and filters.
    user_name_key   text        NOT NULL,
    external_id     text        NOT NULL DEFAULT '',
    -- Lower-cased email values, for filters (jsonb array of strings).
    emails          jsonb       NOT NULL DEFAULT '[]',
    active          boolean     NOT NULL,
    -- The accepted SCIM attributes (never the password).
    attributes      jsonb       NOT NULL,
    version         bigint      NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deactivated_at  timestamptz,
    reactivated_at  timestamptz,
    lockout_id      text,
    locked_at       timestamptz,
    deleted_at      timestamptz,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

-- userName is unique per org among users not deleted, case-insensitively
-- (RFC 7643: caseExact false, uniqueness server).
CREATE UNIQUE INDEX scim_users_org_user_name_idx ON scim_users (org_id, user_name_key)
    WHERE deleted_at IS NULL;
CREATE INDEX scim_users_org_external_id_idx ON scim_users (org_id, external_id)
    WHERE external_id <> '';
CREATE INDEX scim_users_org_created_idx ON scim_users (org_id, created_at, id);
CREATE INDEX scim_users_emails_idx ON scim_users USING gin (emails jsonb_path_ops);

CREATE TABLE scim_groups (
    id           text        PRIMARY KEY,
    org_id       text        NOT NULL REFERENCES orgs (id),
    display_name text        NOT NULL,
    display_name_key text    NOT NULL,
    external_id  text        NOT NULL DEFAULT '',
    attributes   jsonb       NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (org_id, id)
);

-- Entra ID matches groups by displayName: unique per org, case-insensitively.
CREATE UNIQUE INDEX scim_groups_org_display_name_idx ON scim_groups (org_id, display_name_key);
CREATE INDEX scim_groups_org_created_idx ON scim_groups (org_id, created_at, id);

CREATE TABLE scim_group_members (
    org_id       text        NOT NULL,
    group_id     text        NOT NULL,
    scim_user_id text        NOT NULL,
    added_at     timestamptz NOT NULL,
    PRIMARY KEY (org_id, group_id, scim_user_id),
    FOREIGN KEY (org_id, group_id) REFERENCES scim_groups (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, scim_user_id) REFERENCES scim_users (org_id, id)
);

CREATE INDEX scim_group_members_user_idx ON scim_group_members (org_id, scim_user_id);

-- Tenant isolation as for every org table (see 004_rls). Users are deleted
-- softly (they keep their lockout record); groups and memberships for real.
GRANT SELECT, INSERT, UPDATE, DELETE ON scim_tokens TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON scim_users TO toktra_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON scim_groups TO toktra_app;
GRANT SELECT, INSERT, DELETE ON scim_group_members TO toktra_app;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['scim_tokens', 'scim_users', 'scim_groups', 'scim_group_members'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id())', t);
    END LOOP;
END
$$;

-- The token lookup's own policy, for the owner only and only for the row
-- whose hash the function was given (see 004_rls for the reasoning).
DO $$
BEGIN
    EXECUTE format($p$
        CREATE POLICY lookup_by_hash ON scim_tokens FOR SELECT TO %I
        USING (hash = decode(NULLIF(current_setting('toktra.scim_token_hash', true), ''), 'hex'))
    $p$, current_user);
END
$$;

-- scim_token_by_hash is GetSCIMTokenByHash: the one token whose secret
-- hashes to token_hash, in whichever org.
CREATE FUNCTION scim_token_by_hash(token_hash bytea)
RETURNS TABLE (id text, org_id text, hash bytea, hint text,
    created_at timestamptz, last_used_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org  text := current_setting('toktra.org_id', true);
    caller_hash text := current_setting('toktra.scim_token_hash', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.scim_token_hash', encode(token_hash, 'hex'), true);
    RETURN QUERY
        SELECT t.id, t.org_id, t.hash, t.hint, t.created_at, t.last_used_at
        FROM public.scim_tokens t
        WHERE t.hash = token_hash;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.scim_token_hash', caller_hash, true);
END
$$;

REVOKE EXECUTE ON FUNCTION scim_token_by_hash(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scim_token_by_hash(bytea) TO toktra_app;
