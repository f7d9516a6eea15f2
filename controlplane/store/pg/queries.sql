-- Queries of the Postgres store, one per "-- name:" block (see package sqlq).
-- The SQLite store has a query of every name here, in its own dialect. Every
-- query on org-owned rows filters by org_id, and runs in a transaction scoped
-- to that org, where Row-Level Security hides every other org's rows (see
-- migration 004). Times are timestamptz, NULL meaning none; lists and maps
-- are jsonb.

-- name: CreateOrg
INSERT INTO orgs (id, name, created_at)
VALUES ($1, $2, $3)
RETURNING id, name, created_at;

-- name: GetOrg
SELECT id, name, created_at
FROM orgs
WHERE id = $1;

-- name: CreateAPIKey
INSERT INTO api_keys (id, org_id, name, scope, hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, org_id, name, scope, hash, created_at, expires_at, revoked_at;

-- name: GetAPIKeyByHash
-- Crosses orgs (no org is known yet) through a SECURITY DEFINER function
-- that returns the one key with this hash.
SELECT id, org_id, name, scope, hash, created_at, expires_at, revoked_at
FROM api_key_by_hash($1);

-- name: ListAPIKeys
SELECT id, org_id, name, scope, hash, created_at, expires_at, revoked_at
FROM api_keys
WHERE org_id = $1
ORDER BY created_at, id;

-- name: RevokeAPIKey
UPDATE api_keys
SET revoked_at = COALESCE(revoked_at, $3)
WHERE org_id = $1 AND id = $2;

-- name: CreateEnrollmentSecret
INSERT INTO enrollment_secrets (id, org_id, name, hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, org_id, name, hash, created_at, expires_at, revoked_at;

-- name: GetEnrollmentSecretByHash
-- Crosses orgs, like GetAPIKeyByHash.
SELECT id, org_id, name, hash, created_at, expires_at, revoked_at
FROM enrollment_secret_by_hash($1);

-- name: ListEnrollmentSecrets
SELECT id, org_id, name, hash, created_at, expires_at, revoked_at
FROM enrollment_secrets
WHERE org_id = $1
ORDER BY created_at, id;

-- name: RevokeEnrollmentSecret
UPDATE enrollment_secrets
SET revoked_at = COALESCE(revoked_at, $3)
WHERE org_id = $1 AND id = $2;

-- name: UpsertUser
-- $3 is the lower-cased email; an empty name keeps the stored one.
INSERT INTO users (id, org_id, email, name, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, email) DO UPDATE
SET name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE users.name END
RETURNING id, org_id, email, name, created_at;

-- name: GetUser
SELECT id, org_id, email, name, created_at
FROM users
WHERE org_id = $1 AND id = $2;

-- name: GetUserByEmail
SELECT id, org_id, email, name, created_at
FROM users
WHERE org_id = $1 AND email = $2;

-- name: ListUsers
SELECT id, org_id, email, name, created_at
FROM users
WHERE org_id = $1
ORDER BY email;

-- name: CreateDevice
INSERT INTO devices (id, org_id, user_id, hostname, os, os_version, arch, serial, agent_version, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id, org_id, user_id, hostname, os, os_version, arch, serial, agent_version,
    enforcers, unsupported, cert_serial, cert_not_after, created_at, last_seen_at, connected,
    lock_state, enforcement_active, last_applied_seq, last_seq, revoked_at;

-- name: GetDevice
SELECT id, org_id, user_id, hostname, os, os_version, arch, serial, agent_version,
    enforcers, unsupported, cert_serial, cert_not_after, created_at, last_seen_at, connected,
    lock_state, enforcement_active, last_applied_seq, last_seq, revoked_at
FROM devices
WHERE org_id = $1 AND id = $2;

-- name: ListDevices
-- $2 = '' keeps every user's devices; $3 keeps revoked ones.
SELECT id, org_id, user_id, hostname, os, os_version, arch, serial, agent_version,
    enforcers, unsupported, cert_serial, cert_not_after, created_at, last_seen_at, connected,
    lock_state, enforcement_active, last_applied_seq, last_seq, revoked_at
FROM devices
WHERE org_id = $1
    AND ($2 = '' OR user_id = $2)
    AND ($3::boolean OR revoked_at IS NULL)
ORDER BY created_at, id;

-- name: SetDeviceCert
UPDATE devices
SET cert_serial = $3, cert_not_after = $4
WHERE org_id = $1 AND id = $2;

-- name: RecordDeviceState
UPDATE devices
SET agent_version = $3,
    enforcers = $4,
    unsupported = $5,
    lock_state = $6,
    enforcement_active = $7,
    last_applied_seq = $8,
    last_seen_at = $9
WHERE org_id = $1 AND id = $2;

-- name: SetDeviceConnected
UPDATE devices
SET connected = $3, last_seen_at = $4
WHERE org_id = $1 AND id = $2;

-- name: RevokeDevice
UPDATE devices
SET revoked_at = COALESCE(revoked_at, $3)
WHERE org_id = $1 AND id = $2;

-- name: AllocateCommandSeq
-- Runs in InsertCommand's transaction: the row lock it takes serializes
-- allocation for the device across connections and replicas until commit.
UPDATE devices
SET last_seq = last_seq + 1
WHERE org_id = $1 AND id = $2
RETURNING last_seq;

-- name: InsertCommand
INSERT INTO commands (org_id, device_id, seq, kind, lockout_id, signed, state, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)
RETURNING org_id, device_id, seq, kind, lockout_id, signed, state, reason, detail,
    created_at, expires_at, delivered_at, acked_at;

-- name: GetCommand
SELECT org_id, device_id, seq, kind, lockout_id, signed, state, reason, detail,
    created_at, expires_at, delivered_at, acked_at
FROM commands
WHERE org_id = $1 AND device_id = $2 AND seq = $3;

-- name: ListUnackedCommands
SELECT org_id, device_id, seq, kind, lockout_id, signed, state, reason, detail,
    created_at, expires_at, delivered_at, acked_at
FROM commands
WHERE org_id = $1 AND device_id = $2 AND state IN ('pending', 'delivered')
ORDER BY seq;

-- name: MarkCommandDelivered
UPDATE commands
SET state = 'delivered', delivered_at = $4
WHERE org_id = $1 AND device_id = $2 AND seq = $3 AND state = 'pending';

-- name: AckCommand
-- Only an unacknowledged command changes; an answer implies delivery.
UPDATE commands
SET state = $4, reason = $5, detail = $6, acked_at = $7,
    delivered_at = COALESCE(delivered_at, $7)
WHERE org_id = $1 AND device_id = $2 AND seq = $3 AND state IN ('pending', 'delivered')
RETURNING org_id, device_id, seq, kind, lockout_id, signed, state, reason, detail,
    created_at, expires_at, delivered_at, acked_at;

-- name: ListCommandsByLockout
SELECT org_id, device_id, seq, kind, lockout_id, signed, state, reason, detail,
    created_at, expires_at, delivered_at, acked_at
FROM commands
WHERE org_id = $1 AND lockout_id = $2
ORDER BY device_id, seq;

-- name: CountCommandsByState
-- Crosses orgs through a SECURITY DEFINER function returning only counts.
SELECT state, n
FROM count_commands_by_state();

-- name: CreateLockout
-- Inserts nothing when the user already has an open lockout.
INSERT INTO lockouts (id, org_id, user_id, state, triggered_by, created_at)
VALUES ($1, $2, $3, 'open', $4, $5)
ON CONFLICT (org_id, user_id) WHERE state = 'open' DO NOTHING
RETURNING id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor;

-- name: GetOpenLockout
SELECT id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor
FROM lockouts
WHERE org_id = $1 AND user_id = $2 AND state = 'open';

-- name: GetLockout
SELECT id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor
FROM lockouts
WHERE org_id = $1 AND id = $2;

-- name: ListLockouts
SELECT id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor
FROM lockouts
WHERE org_id = $1
ORDER BY created_at, id;

-- name: OverrideLockout
UPDATE lockouts
SET state = 'overridden', overridden_at = $5, override_reason = $3, override_actor = $4
WHERE org_id = $1 AND id = $2 AND state = 'open'
RETURNING id, org_id, user_id, state, triggered_by, created_at, overridden_at,
    override_reason, override_actor;

-- name: GetPolicy
-- One row per existing org; the policy columns are NULL when it has none.
SELECT o.id, p.version, p.domains, p.cidrs, p.updated_at
FROM orgs o
LEFT JOIN policies p ON p.org_id = o.id
WHERE o.id = $1;

-- name: PutPolicy
INSERT INTO policies (org_id, version, domains, cidrs, updated_at)
VALUES ($1, 1, $2, $3, $4)
ON CONFLICT (org_id) DO UPDATE
SET version = policies.version + 1,
    domains = excluded.domains,
    cidrs = excluded.cidrs,
    updated_at = excluded.updated_at
RETURNING org_id, version, domains, cidrs, updated_at;

-- name: Ping
SELECT 1;

-- name: LockAuditChain
-- Serializes the org's audit appends until the transaction ends, across
-- replicas. The two-key form keeps clear of the single-key migration lock;
-- the first key is "toka" in ASCII. Orgs whose ids hash alike merely wait
-- for each other.
SELECT pg_advisory_xact_lock(1953459041, hashtext($1));

-- name: GetAuditHead
-- The org's last audit entry, read under LockAuditChain.
SELECT seq, hash
FROM audit_log
WHERE org_id = $1
ORDER BY seq DESC
LIMIT 1;

-- name: InsertAudit
INSERT INTO audit_log (org_id, seq, id, at, actor, action, target_type, target_id,
    detail, remote_ip, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12);

-- name: ListAudit
-- Oldest first (chain order). $2 is the sequence the page continues after
-- (0 on the first page); $3 to $6 (actor, action, target type, target id)
-- filter unless ''; $7 (from, inclusive) and $8 (to, exclusive) unless NULL.
-- $9 is the number of rows to return.
SELECT org_id, seq, id, at, actor, action, target_type, target_id, detail,
    remote_ip, prev_hash, hash
FROM audit_log
WHERE org_id = $1
    AND seq > $2
    AND ($3 = '' OR actor = $3)
    AND ($4 = '' OR action = $4)
    AND ($5 = '' OR target_type = $5)
    AND ($6 = '' OR target_id = $6)
    AND ($7::timestamptz IS NULL OR at >= $7)
    AND ($8::timestamptz IS NULL OR at < $8)
ORDER BY seq
LIMIT $9;
