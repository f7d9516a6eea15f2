-- Row-Level Security: tenant isolation enforced by Postgres itself, behind
-- the org_id filter every query already has.
--
-- The store connects as the schema owner (who runs these migrations) and
-- then, for everything else, switches to toktra_app (SET ROLE; see pg.Open):
-- a role that owns nothing, holds only the privileges below, and sees only
-- the rows of the org its transaction names in toktra.org_id
-- (set_config('toktra.org_id', $org, true), transaction-local, so a pooled
-- connection never carries one org's scope into the next transaction). A
-- query that forgets its org filter still sees one org; with no org set it
-- sees nothing and can write nothing. RLS is FORCEd as well, so the owner's
-- own sessions are scoped the same way unless it deliberately opts out.
--
-- Three lookups must cross orgs: an API key and an enrollment secret found
-- by hash (they establish the org), and the command counts behind the
-- metrics. They are SECURITY DEFINER functions owned by the schema owner,
-- each returning exactly what its lookup needs. FORCE applies to the owner
-- too, so each is matched by a policy of its own that applies only TO the
-- owner and only while the function runs:
--   * the function sets toktra.org_id to '' (so the org policy shows it
--     nothing) and the lookup's own setting, and restores the caller's
--     values before it returns;
--   * the hash lookups' policies admit only the row whose hash equals the
--     one the function was given (knowing the hash means knowing the
--     secret), so even a careless edit of the function body could not list
--     other rows; the count's policy admits commands, but the function
--     returns one aggregate row per state and nothing else;
--   * toktra_app is not a member of the owner, so those policies never
--     apply to it, whatever it sets: its only way to the other orgs' rows
--     is to call the functions, which return what is described above;
--   * search_path is pinned (pg_temp last) and tables are schema-qualified,
--     so nothing the caller creates can stand in for them.
-- An owner session could set those settings itself, but the owner can turn
-- RLS off anyway: FORCE guards its sessions against mistakes, not intent.
-- (A superuser owner, as in tests, bypasses RLS entirely; the policies
-- matter for an owner that is not one, as on RDS.)

-- Roles are cluster-wide: another database on the cluster may have created
-- it (several deployments, or the tests' databases migrating in parallel).
-- A creation racing ours fails on the catalog's unique index
-- (unique_violation) rather than with duplicate_object: both mean it exists.
DO $$
BEGIN
    CREATE ROLE toktra_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The owner must be able to SET ROLE toktra_app. A superuser can already;
-- a CREATEROLE owner grants itself the membership.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'toktra_app', 'MEMBER') THEN
        EXECUTE format('GRANT toktra_app TO %I', current_user);
    END IF;
EXCEPTION
    WHEN unique_violation THEN
        NULL; -- a parallel migration granted it
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'role % cannot become toktra_app: as a superuser, run GRANT toktra_app TO %', current_user, current_user
            USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Before Postgres 15 every role may create objects in public; toktra_app
-- must not (it owns nothing, and could otherwise shadow functions).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO toktra_app;

-- Exactly what the store does with each table. No UPDATE or DELETE on the
-- audit log: it is append-only for the application by privilege, and for
-- everyone by its triggers.
GRANT SELECT, INSERT ON orgs TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON enrollment_secrets TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON users TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON devices TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON lockouts TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON commands TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON policies TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON lockout_steps TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON provider_revocations TO toktra_app;
GRANT SELECT, INSERT ON lockout_triggers TO toktra_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON provider_connections TO toktra_app;
GRANT SELECT, INSERT ON audit_log TO toktra_app;
GRANT USAGE ON SEQUENCE lockout_triggers_id_seq TO toktra_app;

-- The org the current transaction is scoped to; NULL when none is set (or
-- the setting was reset to ''), which matches no row and admits no insert.
-- Plain SQL, so the planner inlines it and org_id indexes still apply.
CREATE FUNCTION toktra_org_id() RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT NULLIF(current_setting('toktra.org_id', true), '') $$;

-- One policy per org-owned table, the same for reads and writes: a row is
-- visible, changeable and insertable only in the org that is set.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'api_keys', 'enrollment_secrets', 'users', 'devices', 'lockouts',
        'commands', 'policies', 'lockout_steps', 'provider_revocations',
        'lockout_triggers', 'provider_connections', 'audit_log'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id())', t);
    END LOOP;
END
$$;

-- orgs is keyed by its own id.
ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON orgs
    USING (id = toktra_org_id()) WITH CHECK (id = toktra_org_id());

-- The definer functions' policies, for the owner only (see the top). The
-- hash comparisons are index conditions: current_setting is stable.
DO $$
BEGIN
    EXECUTE format($p$
        CREATE POLICY lookup_by_hash ON api_keys FOR SELECT TO %I
        USING (hash = decode(NULLIF(current_setting('toktra.api_key_hash', true), ''), 'hex'))
    $p$, current_user);
    EXECUTE format($p$
        CREATE POLICY lookup_by_hash ON enrollment_secrets FOR SELECT TO %I
        USING (hash = decode(NULLIF(current_setting('toktra.enrollment_secret_hash', true), ''), 'hex'))
    $p$, current_user);
    EXECUTE format($p$
        CREATE POLICY count_by_state ON commands FOR SELECT TO %I
        USING (current_setting('toktra.definer', true) = 'count_commands_by_state')
    $p$, current_user);
END
$$;

-- The functions set the lookup's settings, and toktra.org_id to '' so the
-- org policy shows them nothing, with set_config, and put the caller's
-- values back before returning. (A SET clause would restore them by itself,
-- but since Postgres 15 only a superuser may attach one for a custom
-- setting, and the owner need not be one.) RETURN QUERY runs the query to
-- completion before the restore, and an error rolls the settings back with
-- the transaction or savepoint it aborts.

-- api_key_by_hash is GetAPIKeyByHash: the one key whose secret hashes to
-- key_hash, in whichever org.
CREATE FUNCTION api_key_by_hash(key_hash bytea)
RETURNS TABLE (id text, org_id text, name text, scope text, hash bytea,
    created_at timestamptz, expires_at timestamptz, revoked_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org  text := current_setting('toktra.org_id', true);
    caller_hash text := current_setting('toktra.api_key_hash', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.api_key_hash', encode(key_hash, 'hex'), true);
    RETURN QUERY
        SELECT k.id, k.org_id, k.name, k.scope, k.hash, k.created_at, k.expires_at, k.revoked_at
        FROM public.api_keys k
        WHERE k.hash = key_hash;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.api_key_hash', caller_hash, true);
END
$$;

-- enrollment_secret_by_hash is GetEnrollmentSecretByHash: the one secret
-- whose value hashes to secret_hash, in whichever org.
CREATE FUNCTION enrollment_secret_by_hash(secret_hash bytea)
RETURNS TABLE (id text, org_id text, name text, hash bytea,
    created_at timestamptz, expires_at timestamptz, revoked_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org  text := current_setting('toktra.org_id', true);
    caller_hash text := current_setting('toktra.enrollment_secret_hash', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.enrollment_secret_hash', encode(secret_hash, 'hex'), true);
    RETURN QUERY
        SELECT e.id, e.org_id, e.name, e.hash, e.created_at, e.expires_at, e.revoked_at
        FROM public.enrollment_secrets e
        WHERE e.hash = secret_hash;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.enrollment_secret_hash', caller_hash, true);
END
$$;

-- count_commands_by_state is CountCommandsByState: how many commands are in
-- each state, across all orgs. Aggregates only.
CREATE FUNCTION count_commands_by_state()
RETURNS TABLE (state text, n bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org     text := current_setting('toktra.org_id', true);
    caller_definer text := current_setting('toktra.definer', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.definer', 'count_commands_by_state', true);
    RETURN QUERY
        SELECT c.state, count(*) FROM public.commands c GROUP BY c.state;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.definer', caller_definer, true);
END
$$;

-- Functions are executable by PUBLIC by default; these only by the app.
REVOKE EXECUTE ON FUNCTION api_key_by_hash(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION enrollment_secret_by_hash(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION count_commands_by_state() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_by_hash(bytea) TO toktra_app;
GRANT EXECUTE ON FUNCTION enrollment_secret_by_hash(bytea) TO toktra_app;
GRANT EXECUTE ON FUNCTION count_commands_by_state() TO toktra_app;
