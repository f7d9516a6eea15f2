-- Queries of the SQLite store's SCIMStore, one per "-- name:" block (see
-- package sqlq). The Postgres store has a query of every name here, in its
-- own dialect. Parameters are numbered (?1, ?2, ...); times are microseconds
-- since the Unix epoch, NULL meaning none; booleans are 0 or 1. Lists of
-- ids are passed as one JSON array.

-- name: PutSCIMToken
-- Rotation replaces the row: a new id, hash and hint, never used yet.
INSERT INTO scim_tokens (org_id, id, hash, hint, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (org_id) DO UPDATE
SET id = excluded.id,
    hash = excluded.hash,
    hint = excluded.hint,
    created_at = excluded.created_at,
    last_used_at = NULL
RETURNING id, org_id, hash, hint, created_at, last_used_at;

-- name: GetSCIMToken
SELECT id, org_id, hash, hint, created_at, last_used_at
FROM scim_tokens
WHERE org_id = ?1;

-- name: GetSCIMTokenByHash
SELECT id, org_id, hash, hint, created_at, last_used_at
FROM scim_tokens
WHERE hash = ?1;

-- name: TouchSCIMToken
UPDATE scim_tokens
SET last_used_at = ?3
WHERE org_id = ?1 AND id = ?2;

-- name: DeleteSCIMToken
DELETE FROM scim_tokens
WHERE org_id = ?1;

-- name: CreateSCIMUser
INSERT INTO scim_users (id, org_id, user_id, user_name, user_name_key, external_id, emails, active,
    attributes, created_at, updated_at, deactivated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, CASE WHEN ?8 THEN NULL ELSE ?10 END)
RETURNING id, org_id, user_id, user_name, external_id, emails, active, attributes, version,
    created_at, updated_at, deactivated_at, reactivated_at, lockout_id, locked_at, deleted_at;

-- name: GetSCIMUser
SELECT id, org_id, user_id, user_name, external_id, emails, active, attributes, version,
    created_at, updated_at, deactivated_at, reactivated_at, lockout_id, locked_at, deleted_at
FROM scim_users
WHERE org_id = ?1 AND id = ?2 AND deleted_at IS NULL;

-- name: ListSCIMUsers
-- ?2 user name key, ?3 external id, ?4 lower-cased email filter unless '';
-- ?5 includes deleted users; ?6 limit, ?7 offset.
SELECT id, org_id, user_id, user_name, external_id, emails, active, attributes, version,
    created_at, updated_at, deactivated_at, reactivated_at, lockout_id, locked_at, deleted_at
FROM scim_users
WHERE org_id = ?1
    AND (?2 = '' OR user_name_key = ?2)
    AND (?3 = '' OR external_id = ?3)
    AND (?4 = '' OR EXISTS (SELECT 1 FROM json_each(emails) e WHERE e.value = ?4))
    AND (?5 OR deleted_at IS NULL)
ORDER BY created_at, id
LIMIT ?6 OFFSET ?7;

-- name: CountSCIMUsers
SELECT count(*)
FROM scim_users
WHERE org_id = ?1
    AND (?2 = '' OR user_name_key = ?2)
    AND (?3 = '' OR external_id = ?3)
    AND (?4 = '' OR EXISTS (SELECT 1 FROM json_each(emails) e WHERE e.value = ?4))
    AND (?5 OR deleted_at IS NULL);

-- name: UpdateSCIMUser
-- Only from version ?3. The right-hand sides see the row as it was, so
-- active there is the value before the update.
UPDATE scim_users
SET user_name = ?4,
    user_name_key = ?5,
    external_id = ?6,
    emails = ?7,
    active = ?8,
    attributes = ?9,
    version = version + 1,
    updated_at = ?10,
    deactivated_at = CASE WHEN active AND NOT ?8 THEN ?10 ELSE deactivated_at END,
    reactivated_at = CASE WHEN NOT active AND ?8 THEN ?10 ELSE reactivated_at END,
    -- A new deactivation is not carried out yet.
    locked_at = CASE WHEN active AND NOT ?8 THEN NULL ELSE locked_at END
WHERE org_id = ?1 AND id = ?2 AND version = ?3 AND deleted_at IS NULL
RETURNING id, org_id, user_id, user_name, external_id, emails, active, attributes, version,
    created_at, updated_at, deactivated_at, reactivated_at, lockout_id, locked_at, deleted_at;

-- name: SetSCIMUserLockout
UPDATE scim_users
SET lockout_id = ?3,
    locked_at = ?4
WHERE org_id = ?1 AND id = ?2 AND deleted_at IS NULL
RETURNING id, org_id, user_id, user_name, external_id, emails, active, attributes, version,
    created_at, updated_at, deactivated_at, reactivated_at, lockout_id, locked_at, deleted_at;

-- name: DeleteSCIMUser
UPDATE scim_users
SET deleted_at = ?3,
    updated_at = ?3
WHERE org_id = ?1 AND id = ?2 AND deleted_at IS NULL;

-- name: RemoveSCIMUserFromGroups
DELETE FROM scim_group_members
WHERE org_id = ?1 AND scim_user_id = ?2;

-- name: CreateSCIMGroup
INSERT INTO scim_groups (id, org_id, display_name, display_name_key, external_id, attributes,
    created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
RETURNING id, org_id, display_name, external_id, attributes, version, created_at, updated_at;

-- name: GetSCIMGroup
SELECT id, org_id, display_name, external_id, attributes, version, created_at, updated_at
FROM scim_groups
WHERE org_id = ?1 AND id = ?2;

-- name: ListSCIMGroups
-- ?2 display name key, ?3 external id filter unless ''; ?4 limit, ?5 offset.
SELECT id, org_id, display_name, external_id, attributes, version, created_at, updated_at
FROM scim_groups
WHERE org_id = ?1
    AND (?2 = '' OR display_name_key = ?2)
    AND (?3 = '' OR external_id = ?3)
ORDER BY created_at, id
LIMIT ?4 OFFSET ?5;

-- name: CountSCIMGroups
SELECT count(*)
FROM scim_groups
WHERE org_id = ?1
    AND (?2 = '' OR display_name_key = ?2)
    AND (?3 = '' OR external_id = ?3);

-- name: UpdateSCIMGroup
UPDATE scim_groups
SET display_name = ?4,
    display_name_key = ?5,
    external_id = ?6,
    attributes = ?7,
    version = version + 1,
    updated_at = ?8
WHERE org_id = ?1 AND id = ?2 AND version = ?3
RETURNING id, org_id, display_name, external_id, attributes, version, created_at, updated_at;

-- name: DeleteSCIMGroup
-- Its members go with it (ON DELETE CASCADE).
DELETE FROM scim_groups
WHERE org_id = ?1 AND id = ?2;

-- name: CountLiveSCIMUsers
-- How many of the ids in the JSON array ?2 are users of the org not deleted.
SELECT count(*)
FROM scim_users
WHERE org_id = ?1 AND deleted_at IS NULL
    AND id IN (SELECT value FROM json_each(?2));

-- name: AddSCIMGroupMembers
-- Members already there keep when they were added.
INSERT INTO scim_group_members (org_id, group_id, scim_user_id, added_at)
SELECT ?1, ?2, u.id, ?4
FROM scim_users u
WHERE u.org_id = ?1 AND u.deleted_at IS NULL
    AND u.id IN (SELECT value FROM json_each(?3))
ON CONFLICT (org_id, group_id, scim_user_id) DO NOTHING;

-- name: RemoveSCIMGroupMembers
DELETE FROM scim_group_members
WHERE org_id = ?1 AND group_id = ?2
    AND scim_user_id IN (SELECT value FROM json_each(?3));

-- name: ClearSCIMGroupMembers
DELETE FROM scim_group_members
WHERE org_id = ?1 AND group_id = ?2;

-- name: ListSCIMGroupMembers
SELECT m.scim_user_id, u.user_name, m.added_at
FROM scim_group_members m
JOIN scim_users u ON u.org_id = m.org_id AND u.id = m.scim_user_id
WHERE m.org_id = ?1 AND m.group_id = ?2
ORDER BY m.added_at, m.scim_user_id;
