-- Queries of the Postgres store's TriggerStore, one per "-- name:" block
-- (see package sqlq). The SQLite store has a query of every name here, in
-- its own dialect.

-- name: PutTriggerIntegration
-- Replaces everything but created_at.
INSERT INTO trigger_integrations (org_id, kind, hook_id, settings, sealed_secrets, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (org_id, kind) DO UPDATE
SET hook_id = excluded.hook_id,
    settings = excluded.settings,
    sealed_secrets = excluded.sealed_secrets,
    updated_at = excluded.updated_at
RETURNING org_id, kind, hook_id, settings, sealed_secrets, created_at, updated_at;

-- name: GetTriggerIntegration
SELECT org_id, kind, hook_id, settings, sealed_secrets, created_at, updated_at
FROM trigger_integrations
WHERE org_id = $1 AND kind = $2;

-- name: TriggerHookOrg
-- Crosses orgs through the definer function (migration 009).
SELECT org_id, kind FROM trigger_hook_org($1);

-- name: ListTriggerIntegrations
SELECT org_id, kind, hook_id, settings, sealed_secrets, created_at, updated_at
FROM trigger_integrations
WHERE org_id = $1
ORDER BY kind;

-- name: DeleteTriggerIntegration
-- The poll status goes with it (ON DELETE CASCADE).
DELETE FROM trigger_integrations
WHERE org_id = $1 AND kind = $2;

-- name: RecordTriggerDelivery
INSERT INTO trigger_deliveries (org_id, source, delivery_id, payload_sha256, events, accepted, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: AddTriggerEvent
-- Returns nothing when an event with the same org, source, subject and
-- vendor event id is already stored.
INSERT INTO trigger_events (id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email,
    payload_sha256, detail, state, due_at, received_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
ON CONFLICT (org_id, source, subject, vendor_event_id) DO NOTHING
RETURNING id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email, payload_sha256,
    detail, state, due_at, attempts, last_error, user_id, lockout_id, received_at, updated_at, processed_at;

-- name: GetTriggerEventByVendorID
SELECT id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email, payload_sha256,
    detail, state, due_at, attempts, last_error, user_id, lockout_id, received_at, updated_at, processed_at
FROM trigger_events
WHERE org_id = $1 AND source = $2 AND subject = $3 AND vendor_event_id = $4;

-- name: GetTriggerEvent
SELECT id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email, payload_sha256,
    detail, state, due_at, attempts, last_error, user_id, lockout_id, received_at, updated_at, processed_at
FROM trigger_events
WHERE org_id = $1 AND id = $2;

-- name: UpdateTriggerEvent
-- $3 lists the states the event must be in; an empty list admits any.
-- processed_at is set when the event reaches a final state, cleared when
-- it goes back to pending or scheduled.
UPDATE trigger_events
SET state = $4::text,
    due_at = $5,
    attempts = $6,
    last_error = $7,
    email = $8,
    user_id = $9,
    lockout_id = $10,
    detail = COALESCE($11, detail),
    updated_at = $12::timestamptz,
    processed_at = CASE WHEN $4::text IN ('pending', 'scheduled') THEN NULL ELSE $12::timestamptz END
WHERE org_id = $1 AND id = $2 AND (cardinality($3::text[]) = 0 OR state = ANY ($3::text[]))
RETURNING id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email, payload_sha256,
    detail, state, due_at, attempts, last_error, user_id, lockout_id, received_at, updated_at, processed_at;

-- name: ListTriggerEvents
-- Newest first. $2 (source), $3 (state) and $4 (email) filter unless '';
-- $5 and $6 are the received_at and id of the previous page's last event,
-- $5 NULL on the first page. $7 is the number of rows to return.
SELECT id, org_id, source, delivery_id, subject, vendor_event_id, event_type, email, payload_sha256,
    detail, state, due_at, attempts, last_error, user_id, lockout_id, received_at, updated_at, processed_at
FROM trigger_events
WHERE org_id = $1
    AND ($2 = '' OR source = $2)
    AND ($3 = '' OR state = $3)
    AND ($4 = '' OR email = $4)
    AND ($5::timestamptz IS NULL OR (received_at, id) < ($5, $6))
ORDER BY received_at DESC, id DESC
LIMIT $7;

-- name: PutTriggerIdentity
INSERT INTO trigger_identities (org_id, source, external_id, user_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (org_id, source, external_id) DO UPDATE
SET user_id = excluded.user_id,
    updated_at = excluded.updated_at;

-- name: GetTriggerIdentity
SELECT org_id, source, external_id, user_id, created_at, updated_at
FROM trigger_identities
WHERE org_id = $1 AND source = $2 AND external_id = $3;

-- name: PutTriggerPoll
-- Reschedules, keeping the history.
INSERT INTO trigger_polls (org_id, source, interval_seconds, next_run_at, updated_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, source) DO UPDATE
SET interval_seconds = excluded.interval_seconds,
    next_run_at = excluded.next_run_at,
    updated_at = excluded.updated_at
RETURNING org_id, source, interval_seconds, next_run_at, last_run_at, last_success_at, last_error, cursor_at, updated_at;

-- name: GetTriggerPoll
SELECT org_id, source, interval_seconds, next_run_at, last_run_at, last_success_at, last_error, cursor_at, updated_at
FROM trigger_polls
WHERE org_id = $1 AND source = $2;

-- name: FinishTriggerPoll
-- $4 is the run's error ('' for a success, which moves the cursor to $5
-- and records the success).
UPDATE trigger_polls
SET last_run_at = $7::timestamptz,
    last_error = $4,
    last_success_at = CASE WHEN $4::text = '' THEN $7::timestamptz ELSE last_success_at END,
    cursor_at = CASE WHEN $4::text = '' THEN $5::timestamptz ELSE cursor_at END,
    next_run_at = $6,
    updated_at = $7::timestamptz
WHERE org_id = $1 AND source = $2 AND next_run_at = $3
RETURNING org_id, source, interval_seconds, next_run_at, last_run_at, last_success_at, last_error, cursor_at, updated_at;

-- name: ListTriggerPollSchedules
-- Crosses orgs through the definer function (migration 009).
SELECT org_id, source, next_run_at FROM trigger_poll_schedules();
