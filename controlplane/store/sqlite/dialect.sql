-- Statements only the SQLite store needs (see package sqlq): migration
-- bookkeeping. Each migration runs in its own BEGIN IMMEDIATE transaction,
-- which holds the database's write lock, so concurrent openers serialize.

-- name: CreateSchemaMigrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
) STRICT;

-- name: HasSchemaMigration
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1);

-- name: InsertSchemaMigration
INSERT INTO schema_migrations (version, name) VALUES (?1, ?2);
