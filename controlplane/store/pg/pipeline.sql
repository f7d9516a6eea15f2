-- Queries of the SQLite store's PipelineStore, one per "-- name:" block (see
-- package sqlq). The Postgres store has a query of every name here, in its
-- own dialect. Parameters are numbered ($1, $2, ...); times are timestamptz
-- since the Unix epoch, NULL meaning none.

-- name: InitLockoutStep
-- Appends one pending step after the lockout's others; a step already
-- recorded is left as it is. Runs in InitLockoutSteps' transaction.
INSERT INTO lockout_steps (org_id, lockout_id, step, position, state, updated_at)
SELECT $1::text, $2::text, $3::text, COALESCE(MAX(position), 0) + 1, 'pending', $4::timestamptz
FROM lockout_steps
WHERE org_id = $1 AND lockout_id = $2
ON CONFLICT (org_id, lockout_id, step) DO NOTHING;

-- name: UpdateLockoutStep
-- started_at is the first time the step entered running; finished_at is when
-- it entered done or unconfirmed (kept while it stays finished, cleared if it
-- runs again). The right-hand sides see the row as it was.
UPDATE lockout_steps
SET state = $4,
    attempts = $5,
    last_error = $6,
    updated_at = $7,
    started_at = CASE WHEN $4::text = 'running' THEN COALESCE(started_at, $7) ELSE started_at END,
    finished_at = CASE
        WHEN $4::text NOT IN ('done', 'unconfirmed') THEN NULL
        WHEN state IN ('done', 'unconfirmed') THEN finished_at
        ELSE $7
    END
WHERE org_id = $1 AND lockout_id = $2 AND step = $3
RETURNING org_id, lockout_id, step, state, attempts, last_error, started_at, finished_at, updated_at;

-- name: ListLockoutSteps
SELECT org_id, lockout_id, step, state, attempts, last_error, started_at, finished_at, updated_at
FROM lockout_steps
WHERE org_id = $1 AND lockout_id = $2
ORDER BY position, step;

-- name: PutProviderRevocation
-- Replaces everything but created_at. jsonb keeps the confirmation's meaning,
-- not its spelling (whitespace, key order).
INSERT INTO provider_revocations (org_id, lockout_id, provider, state, attempts, confirmation,
    last_error, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
ON CONFLICT (org_id, lockout_id, provider) DO UPDATE
SET state = excluded.state,
    attempts = excluded.attempts,
    confirmation = excluded.confirmation,
    last_error = excluded.last_error,
    updated_at = excluded.updated_at
RETURNING org_id, lockout_id, provider, state, attempts, confirmation, last_error, created_at, updated_at;

-- name: GetProviderRevocation
SELECT org_id, lockout_id, provider, state, attempts, confirmation, last_error, created_at, updated_at
FROM provider_revocations
WHERE org_id = $1 AND lockout_id = $2 AND provider = $3;

-- name: ListProviderRevocations
SELECT org_id, lockout_id, provider, state, attempts, confirmation, last_error, created_at, updated_at
FROM provider_revocations
WHERE org_id = $1 AND lockout_id = $2
ORDER BY provider;

-- name: AddLockoutTrigger
INSERT INTO lockout_triggers (org_id, lockout_id, source, evidence, at)
VALUES ($1, $2, $3, $4, $5);

-- name: ListLockoutTriggers
-- Oldest first; the id keeps triggers recorded at the same time in order.
SELECT org_id, lockout_id, source, evidence, at
FROM lockout_triggers
WHERE org_id = $1 AND lockout_id = $2
ORDER BY at, id;

-- name: ListLockoutsPage
-- Newest first. $2 (state) and $3 (user id) filter unless ''; $4 and $5 are
-- the created_at and id of the previous page's last lockout, $4 NULL on the
-- first page. $6 is the number of rows to return.
SELECT id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor
FROM lockouts
WHERE org_id = $1
    AND ($2 = '' OR state = $2)
    AND ($3 = '' OR user_id = $3)
    AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: PutProviderConnection
-- Replaces everything but created_at.
INSERT INTO provider_connections (org_id, provider, sealed_key, key_hint, base_url,
    created_at, updated_at, validated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
ON CONFLICT (org_id, provider) DO UPDATE
SET sealed_key = excluded.sealed_key,
    key_hint = excluded.key_hint,
    base_url = excluded.base_url,
    updated_at = excluded.updated_at,
    validated_at = excluded.validated_at
RETURNING org_id, provider, sealed_key, key_hint, base_url, created_at, updated_at, validated_at;

-- name: GetProviderConnection
SELECT org_id, provider, sealed_key, key_hint, base_url, created_at, updated_at, validated_at
FROM provider_connections
WHERE org_id = $1 AND provider = $2;

-- name: ListProviderConnections
SELECT org_id, provider, sealed_key, key_hint, base_url, created_at, updated_at, validated_at
FROM provider_connections
WHERE org_id = $1
ORDER BY provider;

-- name: DeleteProviderConnection
DELETE FROM provider_connections
WHERE org_id = $1 AND provider = $2;

-- name: PutUsageCapture
-- Replaces everything but created_at.
INSERT INTO usage_captures (org_id, lockout_id, provider, state, attempts, window_from, window_to, capture, last_error, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
ON CONFLICT (org_id, lockout_id, provider) DO UPDATE
SET state = excluded.state,
    attempts = excluded.attempts,
    window_from = excluded.window_from,
    window_to = excluded.window_to,
    capture = excluded.capture,
    last_error = excluded.last_error,
    updated_at = excluded.updated_at
RETURNING org_id, lockout_id, provider, state, attempts, window_from, window_to, capture, last_error, created_at, updated_at;

-- name: ListUsageCaptures
SELECT org_id, lockout_id, provider, state, attempts, window_from, window_to, capture, last_error, created_at, updated_at
FROM usage_captures
WHERE org_id = $1 AND lockout_id = $2
ORDER BY provider;
