-- Statements only the Postgres store needs (see package sqlq): migration
-- bookkeeping, and the LISTEN/NOTIFY pair behind SubscribeCommands.

-- name: LockMigrations
-- Held until the transaction ends, so replicas starting together migrate one
-- at a time. $1 is the store's advisory lock key.
SELECT pg_advisory_xact_lock($1);

-- name: CreateSchemaMigrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: HasSchemaMigration
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1);

-- name: InsertSchemaMigration
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);

-- name: NotifyCommand
-- Sent inside InsertCommand's transaction: Postgres delivers it to every
-- listener, on any replica, only if and when the transaction commits.
SELECT pg_notify('toktra_commands', json_build_object(
    'org_id', $1::text,
    'device_id', $2::text,
    'seq', $3::bigint
)::text);

-- name: ListenCommands
LISTEN toktra_commands;

-- name: SetOrg
-- Scopes the rest of the transaction to one org: the Row-Level Security
-- policies (migration 004) show and admit only its rows. Transaction-local,
-- so a pooled connection never carries it into the next transaction.
SELECT set_config('toktra.org_id', $1::text, true);

-- name: SetAppRole
-- Run on every pooled connection once migrations are done: from then on its
-- queries run as the role that owns nothing and is subject to RLS.
SET ROLE toktra_app;

-- name: LockJobQueueMigrations
-- A session lock (River migrates in transactions of its own, on other
-- connections) so replicas starting together migrate the job queue once.
-- $1 is the store's job-queue lock key.
SELECT pg_advisory_lock($1);

-- name: UnlockJobQueueMigrations
SELECT pg_advisory_unlock($1);

-- name: GrantJobQueue
-- River's tables hold no org's rows (job arguments carry ids, not data), so
-- they have no policies; the app role gets what River does with them. River
-- creates them in the first schema of the search path; granting whatever
-- river_* tables and sequences exist there now also covers tables a newer
-- River adds, since this runs after River's migrations on every start.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname, c.relkind
        FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace
            AND c.relkind IN ('r', 'p', 'S')
            AND c.relname LIKE 'river\_%'
    LOOP
        IF r.relkind = 'S' THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %I TO toktra_app', r.relname);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %I TO toktra_app', r.relname);
        END IF;
    END LOOP;
END
$$;
