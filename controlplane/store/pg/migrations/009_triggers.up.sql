-- The identity-provider and HR triggers (Okta, BambooHR, Workday): each
-- org's integrations, every delivery received, the inbox of events with
-- exact deduplication by the vendors' own ids, the vendor identities
-- learned for users, and the pollers' status. Tenant isolation as for
-- every org table (see 004_rls).

CREATE TABLE trigger_integrations (
    org_id         text        NOT NULL REFERENCES orgs (id),
    kind           text        NOT NULL CHECK (kind IN ('okta', 'bamboohr', 'workday')),
    -- The random id in the webhook URL (NULL for polled integrations);
    -- unique across orgs, since it alone names the org of a webhook.
    hook_id        text        UNIQUE,
    settings       jsonb       NOT NULL,
    -- The secrets, envelope-encrypted by the caller; never plaintext.
    sealed_secrets bytea       NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (org_id, kind)
);

CREATE TABLE trigger_deliveries (
    org_id         text        NOT NULL REFERENCES orgs (id),
    source         text        NOT NULL,
    delivery_id    text        NOT NULL,
    payload_sha256 bytea       NOT NULL,
    events         integer     NOT NULL,
    accepted       integer     NOT NULL,
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (org_id, source, delivery_id)
);

CREATE TABLE trigger_events (
    id              text        NOT NULL,
    org_id          text        NOT NULL REFERENCES orgs (id),
    source          text        NOT NULL,
    delivery_id     text        NOT NULL,
    subject         text        NOT NULL,
    vendor_event_id text        NOT NULL,
    event_type      text        NOT NULL,
    email           text        NOT NULL DEFAULT '',
    payload_sha256  bytea       NOT NULL,
    detail          jsonb,
    state           text        NOT NULL CHECK (state IN ('pending', 'scheduled', 'processed', 'ignored', 'unknown_user', 'failed')),
    due_at          timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    user_id         text,
    lockout_id      text,
    received_at     timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    processed_at    timestamptz,
    PRIMARY KEY (org_id, id),
    -- Exact deduplication: Okta's event uuid, BambooHR's employee and
    -- event, Workday's worker and event.
    UNIQUE (org_id, source, subject, vendor_event_id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
);

-- ListTriggerEvents walks an org's inbox newest first by (received_at, id).
CREATE INDEX trigger_events_org_received_idx ON trigger_events (org_id, received_at, id);

CREATE TABLE trigger_identities (
    org_id      text        NOT NULL,
    source      text        NOT NULL,
    external_id text        NOT NULL,
    user_id     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, source, external_id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
);

CREATE TABLE trigger_polls (
    org_id           text        NOT NULL REFERENCES orgs (id),
    source           text        NOT NULL,
    interval_seconds bigint      NOT NULL CHECK (interval_seconds > 0),
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz,
    last_success_at  timestamptz,
    last_error       text        NOT NULL DEFAULT '',
    cursor_at        timestamptz,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (org_id, source),
    FOREIGN KEY (org_id, source) REFERENCES trigger_integrations (org_id, kind) ON DELETE CASCADE
);

GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_integrations TO toktra_app;
GRANT SELECT, INSERT ON trigger_deliveries TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON trigger_events TO toktra_app;
GRANT SELECT, INSERT, UPDATE ON trigger_identities TO toktra_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON trigger_polls TO toktra_app;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'trigger_integrations', 'trigger_deliveries', 'trigger_events',
        'trigger_identities', 'trigger_polls'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (org_id = toktra_org_id()) WITH CHECK (org_id = toktra_org_id())', t);
    END LOOP;
END
$$;

-- Two lookups cross orgs, as the definer functions of 004_rls do (read
-- its notes): finding a webhook's org by its hook id, and listing every
-- org's pollers for the scheduler. Each policy applies only to the owner
-- and only while its function runs; each function returns only what the
-- lookup needs.
DO $$
BEGIN
    EXECUTE format($p$
        CREATE POLICY lookup_by_hook ON trigger_integrations FOR SELECT TO %I
        USING (hook_id = NULLIF(current_setting('toktra.trigger_hook_id', true), ''))
    $p$, current_user);
    EXECUTE format($p$
        CREATE POLICY list_schedules ON trigger_polls FOR SELECT TO %I
        USING (current_setting('toktra.definer', true) = 'trigger_poll_schedules')
    $p$, current_user);
END
$$;

-- trigger_hook_org is the first half of GetTriggerIntegrationByHook: the
-- org and kind of the one integration whose webhook URL carries hook.
CREATE FUNCTION trigger_hook_org(hook text)
RETURNS TABLE (org_id text, kind text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org  text := current_setting('toktra.org_id', true);
    caller_hook text := current_setting('toktra.trigger_hook_id', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.trigger_hook_id', hook, true);
    RETURN QUERY
        SELECT i.org_id, i.kind FROM public.trigger_integrations i WHERE i.hook_id = hook;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.trigger_hook_id', caller_hook, true);
END
$$;

-- trigger_poll_schedules is ListTriggerPollSchedules: each org's pollers
-- and their next run, nothing else.
CREATE FUNCTION trigger_poll_schedules()
RETURNS TABLE (org_id text, source text, next_run_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_org     text := current_setting('toktra.org_id', true);
    caller_definer text := current_setting('toktra.definer', true);
BEGIN
    PERFORM set_config('toktra.org_id', '', true);
    PERFORM set_config('toktra.definer', 'trigger_poll_schedules', true);
    RETURN QUERY
        SELECT p.org_id, p.source, p.next_run_at FROM public.trigger_polls p ORDER BY p.org_id, p.source;
    PERFORM set_config('toktra.org_id', caller_org, true);
    PERFORM set_config('toktra.definer', caller_definer, true);
END
$$;

REVOKE EXECUTE ON FUNCTION trigger_hook_org(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION trigger_poll_schedules() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trigger_hook_org(text) TO toktra_app;
GRANT EXECUTE ON FUNCTION trigger_poll_schedules() TO toktra_app;
