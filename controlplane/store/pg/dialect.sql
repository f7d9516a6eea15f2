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
