-- Queries of the Postgres store's SnapshotStore (see package sqlq). The
-- SQLite store has a query of every name here, in its own dialect.

-- name: InsertSnapshot
-- A lockout has one snapshot: a second insert changes nothing.
INSERT INTO snapshots (org_id, id, lockout_id, pdf, sha256, timestamp_token, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (org_id, lockout_id) DO NOTHING;

-- name: GetSnapshot
SELECT org_id, id, lockout_id, pdf, sha256, timestamp_token, created_at, object_key, version_id, retain_until, uploaded_at
FROM snapshots
WHERE org_id = $1 AND id = $2;

-- name: GetLockoutSnapshot
SELECT org_id, id, lockout_id, pdf, sha256, timestamp_token, created_at, object_key, version_id, retain_until, uploaded_at
FROM snapshots
WHERE org_id = $1 AND lockout_id = $2;

-- name: MarkSnapshotUploaded
-- Only a snapshot not yet uploaded changes; the caller compares otherwise.
UPDATE snapshots
SET object_key = $3, version_id = $4, retain_until = $5, uploaded_at = $6
WHERE org_id = $1 AND id = $2 AND uploaded_at IS NULL;
