-- Nothing to do: Row-Level Security is the Postgres store's second line of
-- tenant isolation (its migration 004). The embedded SQLite store has one
-- process and no database roles; every query filtering by org is its
-- isolation. The file keeps both dialects' migration numbers the same.
SELECT 1;
