-- Queries of the SQLite store's UsageStore, one per "-- name:" block (see
-- package sqlq). The Postgres store has a query of every name here, in its
-- own dialect. Times are microseconds since the Unix epoch.

-- name: AdvanceDeviceBatch
-- Returns a row only when the batch is new: its sequence is above the
-- device's last, or the device has none yet.
INSERT INTO usage_device_batches (org_id, device_id, last_seq, updated_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (org_id, device_id) DO UPDATE
SET last_seq = excluded.last_seq, updated_at = excluded.updated_at
WHERE usage_device_batches.last_seq < excluded.last_seq
RETURNING last_seq;

-- name: InsertDeviceUsage
INSERT INTO usage_events (org_id, user_id, device_id, source, provider, model, domain,
    remote_addr, remote_port, protocol, started_at, ended_at, bytes_sent, bytes_received,
    input_tokens, output_tokens, requests, process_name, process_path, pid, uid,
    api_key_id, provider_user_id)
VALUES ($1, $2, $3, 'device', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
    $17, $18, $19, $20, $21, $22);

-- name: UpsertProviderUsage
INSERT INTO usage_events (org_id, user_id, device_id, source, provider, model, domain,
    remote_addr, remote_port, protocol, started_at, ended_at, bytes_sent, bytes_received,
    input_tokens, output_tokens, requests, process_name, process_path, pid, uid,
    api_key_id, provider_user_id, key)
VALUES ($1, $2, $3, 'provider', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
    $17, $18, $19, $20, $21, $22, $23)
ON CONFLICT (org_id, provider, key) WHERE key IS NOT NULL DO UPDATE
SET user_id = excluded.user_id,
    device_id = excluded.device_id,
    model = excluded.model,
    domain = excluded.domain,
    started_at = excluded.started_at,
    ended_at = excluded.ended_at,
    bytes_sent = excluded.bytes_sent,
    bytes_received = excluded.bytes_received,
    input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    requests = excluded.requests,
    api_key_id = excluded.api_key_id,
    provider_user_id = excluded.provider_user_id;

-- name: ScanUserUsage
SELECT user_id, device_id, source, provider, model, domain, remote_addr, remote_port, protocol,
    started_at, ended_at, bytes_sent, bytes_received, input_tokens, output_tokens, requests,
    process_name, process_path, pid, uid, api_key_id, provider_user_id, key
FROM usage_events
WHERE org_id = $1 AND user_id = $2 AND started_at >= $3 AND started_at < $4
ORDER BY started_at;

-- name: SummarizeUserUsage
-- Days are UTC: 86400000000 microseconds each, floored (the epoch is a UTC
-- midnight; times before it do not occur).
SELECT (started_at / 86400000000) * 86400000000 AS day, source, provider, model,
    count(*), sum(requests), sum(input_tokens), sum(output_tokens), sum(bytes_sent), sum(bytes_received)
FROM usage_events
WHERE org_id = $1 AND user_id = $2 AND started_at >= $3 AND started_at < $4
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4;

-- name: ListUsageDays
-- Models and providers come back as JSON arrays, distinct, sorted in Go.
SELECT user_id, (started_at / 86400000000) * 86400000000 AS day, count(*),
    sum(input_tokens + output_tokens),
    json_group_array(DISTINCT model) FILTER (WHERE model <> ''),
    json_group_array(DISTINCT provider) FILTER (WHERE provider <> ''),
    COALESCE(min(bytes_sent) FILTER (WHERE bytes_sent > 0), 0),
    COALESCE(max(bytes_sent) FILTER (WHERE bytes_sent > 0), 0),
    COALESCE(sum(bytes_sent) FILTER (WHERE bytes_sent > 0) / count(*) FILTER (WHERE bytes_sent > 0), 0)
FROM usage_events
WHERE org_id = $1 AND user_id IS NOT NULL AND started_at >= $2 AND started_at < $3
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: GetUsageCursor
SELECT org_id, provider, through, updated_at
FROM usage_cursors
WHERE org_id = $1 AND provider = $2;

-- name: PutUsageCursor
INSERT INTO usage_cursors (org_id, provider, through, updated_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (org_id, provider) DO UPDATE
SET through = excluded.through, updated_at = excluded.updated_at
RETURNING org_id, provider, through, updated_at;

-- name: DeleteUsageBefore
DELETE FROM usage_events
WHERE rowid IN (SELECT rowid FROM usage_events WHERE started_at < $1 LIMIT $2);

-- name: ListUsageSources
SELECT org_id, provider FROM provider_connections ORDER BY org_id, provider;
