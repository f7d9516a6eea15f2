-- The identity-provider and HR triggers (Okta, BambooHR, Workday): each
-- org's integrations, every delivery received, the inbox of events with
-- exact deduplication by the vendors' own ids, the vendor identities
-- learned for users, and the pollers' status.

CREATE TABLE trigger_integrations (
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    kind           TEXT    NOT NULL CHECK (kind IN ('okta', 'bamboohr', 'workday')),
    -- The random id in the webhook URL (NULL for polled integrations);
    -- unique across orgs, since it alone names the org of a webhook.
    hook_id        TEXT    UNIQUE,
    settings       TEXT    NOT NULL CHECK (json_valid(settings)),
    -- The secrets, envelope-encrypted by the caller; never plaintext.
    sealed_secrets BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, kind)
) STRICT, WITHOUT ROWID;

CREATE TABLE trigger_deliveries (
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    source         TEXT    NOT NULL,
    delivery_id    TEXT    NOT NULL,
    payload_sha256 BLOB    NOT NULL,
    events         INTEGER NOT NULL,
    accepted       INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, source, delivery_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE trigger_events (
    id              TEXT    NOT NULL,
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    source          TEXT    NOT NULL,
    delivery_id     TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    vendor_event_id TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    email           TEXT    NOT NULL DEFAULT '',
    payload_sha256  BLOB    NOT NULL,
    detail          TEXT    CHECK (detail IS NULL OR json_valid(detail)),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'scheduled', 'processed', 'ignored', 'unknown_user', 'failed')),
    due_at          INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    user_id         TEXT,
    lockout_id      TEXT,
    received_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    processed_at    INTEGER,
    PRIMARY KEY (org_id, id),
    -- Exact deduplication: Okta's event uuid, BambooHR's employee and
    -- event, Workday's worker and event.
    UNIQUE (org_id, source, subject, vendor_event_id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT, WITHOUT ROWID;

-- ListTriggerEvents walks an org's inbox newest first by (received_at, id).
CREATE INDEX trigger_events_org_received_idx ON trigger_events (org_id, received_at, id);

CREATE TABLE trigger_identities (
    org_id      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, source, external_id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE trigger_polls (
    org_id           TEXT    NOT NULL REFERENCES orgs (id),
    source           TEXT    NOT NULL,
    interval_seconds INTEGER NOT NULL CHECK (interval_seconds > 0),
    next_run_at      INTEGER NOT NULL,
    last_run_at      INTEGER,
    last_success_at  INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    cursor_at        INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, source),
    FOREIGN KEY (org_id, source) REFERENCES trigger_integrations (org_id, kind) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
