-- The departing user's usage at each provider, captured before revocation
-- (providers drop a removed user's identity from their usage data).
CREATE TABLE usage_captures (
    org_id      TEXT    NOT NULL,
    lockout_id  TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'captured', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    window_from INTEGER NOT NULL,
    window_to   INTEGER NOT NULL,
    capture     TEXT    CHECK (capture IS NULL OR json_valid(capture)),
    last_error  TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, lockout_id, provider),
    FOREIGN KEY (org_id, lockout_id) REFERENCES lockouts (org_id, id)
) STRICT, WITHOUT ROWID;
