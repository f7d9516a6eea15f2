-- Queries of the SQLite store's CustodyStore, one per "-- name:" block
-- (see package sqlq). Parameters are numbered (?1, ?2, ...); times are
-- microseconds since the Unix epoch. The Postgres store has a query of every name, in its own
-- dialect. Node queries return the node's columns followed by its token's
-- (NULL when it has none).

-- name: CustodyLogSize
SELECT COALESCE(MAX(idx) + 1, 0)
FROM custody_nodes
WHERE org_id = ?1;

-- name: CustodyNodeExists
SELECT EXISTS (SELECT 1 FROM custody_nodes WHERE org_id = ?1 AND hash = ?2);

-- name: FindCustodyNodeByKey
SELECT n.org_id, n.idx, n.hash, n.lockout_id, n.kind, n.subject, n.parents, n.payload_hash, n.payload, n.at,
    t.token, t.gen_time, t.tsa, t.stamped_at
FROM custody_nodes n
LEFT JOIN custody_tokens t ON t.org_id = n.org_id AND t.node_hash = n.hash
WHERE n.org_id = ?1 AND n.lockout_id = ?2 AND n.kind = ?3 AND n.subject = ?4;

-- name: InsertCustodyNode
INSERT INTO custody_nodes (org_id, idx, hash, lockout_id, kind, subject, parents, payload_hash, payload, at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10);

-- name: GetCustodyNode
SELECT n.org_id, n.idx, n.hash, n.lockout_id, n.kind, n.subject, n.parents, n.payload_hash, n.payload, n.at,
    t.token, t.gen_time, t.tsa, t.stamped_at
FROM custody_nodes n
LEFT JOIN custody_tokens t ON t.org_id = n.org_id AND t.node_hash = n.hash
WHERE n.org_id = ?1 AND n.hash = ?2;

-- name: GetCustodyNodeAt
SELECT n.org_id, n.idx, n.hash, n.lockout_id, n.kind, n.subject, n.parents, n.payload_hash, n.payload, n.at,
    t.token, t.gen_time, t.tsa, t.stamped_at
FROM custody_nodes n
LEFT JOIN custody_tokens t ON t.org_id = n.org_id AND t.node_hash = n.hash
WHERE n.org_id = ?1 AND n.idx = ?2;

-- name: ListCustodyNodes
-- ?2 filters by lockout unless ''; ?3 keeps only nodes without a token;
-- ?4 is the index the page continues after (-1 from the start); ?5 the limit.
SELECT n.org_id, n.idx, n.hash, n.lockout_id, n.kind, n.subject, n.parents, n.payload_hash, n.payload, n.at,
    t.token, t.gen_time, t.tsa, t.stamped_at
FROM custody_nodes n
LEFT JOIN custody_tokens t ON t.org_id = n.org_id AND t.node_hash = n.hash
WHERE n.org_id = ?1
    AND (?2 = '' OR n.lockout_id = ?2)
    AND (NOT ?3 OR t.node_hash IS NULL)
    AND n.idx > ?4
ORDER BY n.idx
LIMIT ?5;

-- name: CustodyLeaves
SELECT hash
FROM custody_nodes
WHERE org_id = ?1 AND idx < ?2
ORDER BY idx;

-- name: InsertCustodyToken
-- The first token stays: a second insert returns no row.
INSERT INTO custody_tokens (org_id, node_hash, token, gen_time, tsa, stamped_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (org_id, node_hash) DO NOTHING
RETURNING org_id, node_hash, token, gen_time, tsa, stamped_at;

-- name: GetCustodyToken
SELECT org_id, node_hash, token, gen_time, tsa, stamped_at
FROM custody_tokens
WHERE org_id = ?1 AND node_hash = ?2;

-- name: InsertCustodyCheckpoint
INSERT INTO custody_checkpoints (org_id, size, root_hash, note, token, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (org_id, size) DO NOTHING
RETURNING org_id, size, root_hash, note, token, created_at;

-- name: GetCustodyCheckpoint
SELECT org_id, size, root_hash, note, token, created_at
FROM custody_checkpoints
WHERE org_id = ?1 AND size = ?2;

-- name: LatestCustodyCheckpoint
SELECT org_id, size, root_hash, note, token, created_at
FROM custody_checkpoints
WHERE org_id = ?1
ORDER BY size DESC
LIMIT 1;
