-- LLM usage: connections seen by the agents (device rows) and the providers'
-- usage records (provider rows), per org, read per user in time order. See
-- the Postgres migration of the same number for the reasoning; here batches
-- go in as prepared inserts in one transaction.
CREATE TABLE usage_events (
    org_id           TEXT    NOT NULL,
    user_id          TEXT,
    device_id        TEXT,
    source           TEXT    NOT NULL CHECK (source IN ('device', 'provider')),
    provider         TEXT    NOT NULL DEFAULT '',
    model            TEXT    NOT NULL DEFAULT '',
    domain           TEXT    NOT NULL DEFAULT '',
    remote_addr      TEXT    NOT NULL DEFAULT '',
    remote_port      INTEGER NOT NULL DEFAULT 0,
    protocol         TEXT    NOT NULL DEFAULT '',
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER NOT NULL,
    bytes_sent       INTEGER NOT NULL DEFAULT 0,
    bytes_received   INTEGER NOT NULL DEFAULT 0,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    requests         INTEGER NOT NULL DEFAULT 0,
    process_name     TEXT    NOT NULL DEFAULT '',
    process_path     TEXT    NOT NULL DEFAULT '',
    pid              INTEGER NOT NULL DEFAULT 0,
    uid              INTEGER NOT NULL DEFAULT 0,
    api_key_id       TEXT    NOT NULL DEFAULT '',
    provider_user_id TEXT    NOT NULL DEFAULT '',
    key              TEXT,
    CHECK ((source = 'provider') = (key IS NOT NULL))
) STRICT;

CREATE INDEX usage_events_user_idx ON usage_events (org_id, user_id, started_at);
CREATE INDEX usage_events_org_started_idx ON usage_events (org_id, started_at);
CREATE INDEX usage_events_started_idx ON usage_events (started_at);
CREATE UNIQUE INDEX usage_events_provider_key ON usage_events (org_id, provider, key)
    WHERE key IS NOT NULL;

CREATE TABLE usage_device_batches (
    org_id     TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    last_seq   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, device_id),
    FOREIGN KEY (org_id, device_id) REFERENCES devices (org_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_cursors (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    provider   TEXT    NOT NULL,
    through    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, provider)
) STRICT, WITHOUT ROWID;
