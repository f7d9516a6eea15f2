-- LLM usage: connections seen by the agents (device rows) and the providers'
-- usage records (provider rows), per org, read per user in time order.
--
-- Ingestion must stay fast at months of data: batches arrive by COPY and the
-- table carries only two indexes. The btree serves every per-user read (the
-- detector's scan, the summaries); the BRIN on started_at, a few pages for
-- the whole table since rows arrive roughly in time order, serves the
-- org-wide peer aggregation and retention. No foreign keys: each would cost
-- a lookup per row; the device's batch row (below) checks the device is the
-- org's, and user ids are resolved by the writer in the same org.
CREATE TABLE usage_events (
    org_id           text        NOT NULL,
    user_id          text,
    device_id        text,
    source           text        NOT NULL CHECK (source IN ('device', 'provider')),
    provider         text        NOT NULL DEFAULT '',
    model            text        NOT NULL DEFAULT '',
    domain           text        NOT NULL DEFAULT '',
    remote_addr      text        NOT NULL DEFAULT '',
    remote_port      integer     NOT NULL DEFAULT 0,
    protocol         text        NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz NOT NULL,
    bytes_sent       bigint      NOT NULL DEFAULT 0,
    bytes_received   bigint      NOT NULL DEFAULT 0,
    input_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens    bigint      NOT NULL DEFAULT 0,
    requests         bigint      NOT NULL DEFAULT 0,
    process_name     text        NOT NULL DEFAULT '',
    process_path     text        NOT NULL DEFAULT '',
    pid              bigint      NOT NULL DEFAULT 0,
    uid              bigint      NOT NULL DEFAULT 0,
    api_key_id       text        NOT NULL DEFAULT '',
    provider_user_id text        NOT NULL DEFAULT '',
    -- Provider rows' bucket identity; NULL for device rows.
    key              text,
    CHECK ((source = 'provider') = (key IS NOT NULL))
);

CREATE INDEX usage_events_user_idx ON usage_events (org_id, user_id, started_at);
CREATE INDEX usage_events_started_brin ON usage_events USING brin (started_at);
-- Overlapping provider polls replace a bucket's row. Device rows (key NULL)
-- never enter this index, so it costs their COPY nothing.
CREATE UNIQUE INDEX usage_events_provider_key ON usage_events (org_id, provider, key)
    WHERE key IS NOT NULL;

-- The last agent batch applied per device: a re-sent batch is recognized
-- by its sequence and stored once.
CREATE TABLE usage_device_batches (
    org_id     text        NOT NULL,
    device_id  text        NOT NULL,
    last_seq   bigint      NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, device_id),
    FOREIGN KEY (org_id, device_id) REFERENCES devices (org_id, id)
);

-- How far each org's usage from each provider has been ingested.
CREATE TABLE usage_cursors (
    org_id     text        NOT NULL REFERENCES orgs (id),
    provider   text        NOT NULL,
    through    timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, provider)
);

-- Tenant isolation as for every org table (see 004_rls). DELETE on
-- usage_events is for retention, which runs through delete_usage_before.
GRANT SELECT, INSERT, UPDATE, DELETE ON usage_events TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON usage_device_batches TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON usage_cursors TO toktra_app;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_events', 'usage_device_batches', 'usage_cursors'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id())', t);
    END LOOP;
END
$$;

-- Two jobs must cross orgs, as the definer functions of 004_rls do (read
-- its header): retention deletes old events of every org, and ingestion
-- lists which orgs have which providers connected. Each gets a policy of
-- its own, for the owner only and only while its function runs, and the
-- functions return nothing but a count and (org, provider) pairs.
DO $$
BEGIN
    EXECUTE format($p$
        CREATE POLICY retention_read ON usage_events FOR SELECT TO %I
        USING (current_setting('toktra.definer', true) = 'delete_usage_before')
    $p$, current_user);
    EXECUTE format($p$
        CREATE POLICY retention_delete ON usage_events FOR DELETE TO %I
        USING (current_setting('toktra.definer', true) = 'delete_usage_before')
    $p$, current_user);
    EXECUTE format($p$
        CREATE POLICY usage_sources ON provider_connections FOR SELECT TO %I
        USING (current_setting('toktra.definer', true) = 'usage_sources')
    $p$, current_user);
END
$$;

-- delete_usage_before is DeleteUsageBefore: removes up to max_rows events
-- of any org that started before cutoff, oldest blocks first as the BRIN
-- finds them, and returns how many.
CREATE FUNCTION delete_usage_before(cutoff timestamptz, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org     text := current_setting('toktra.org_id', true);
    caller_definer text := current_setting('toktra.definer', true);
    n              bigint;
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.definer', 'delete_usage_before', true);
    DELETE FROM public.usage_events
    WHERE ctid = ANY (ARRAY(
        SELECT e.ctid FROM public.usage_events e
        WHERE e.started_at < cutoff
        LIMIT max_rows));
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.definer', caller_definer, true);
    RETURN n;
END
$$;

-- usage_sources is ListUsageSources: every org's connected providers, by
-- name only (never the sealed key).
CREATE FUNCTION usage_sources()
RETURNS TABLE (org_id text, provider text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org     text := current_setting('toktra.org_id', true);
    caller_definer text := current_setting('toktra.definer', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.definer', 'usage_sources', true);
    RETURN QUERY
        SELECT c.org_id, c.provider FROM public.provider_connections c
        ORDER BY c.org_id, c.provider;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.definer', caller_definer, true);
END
$$;

REVOKE EXECUTE ON FUNCTION delete_usage_before(timestamptz, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION usage_sources() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION delete_usage_before(timestamptz, integer) TO toktra_app;
GRANT EXECUTE ON FUNCTION usage_sources() TO toktra_app;
