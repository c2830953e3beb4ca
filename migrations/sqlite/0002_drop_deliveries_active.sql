-- PostgreSQL's migration 0016 in the state file: the dashboard reads queued and sending rows
-- through the dispatcher's partial indexes (`deliveries_due`, `deliveries_dispatched`,
-- `deliveries_lease`, and `deliveries_claimed_by` for the rows being sent), so a planned row no
-- longer enters `deliveries_active` as well. The Retrying list (queued after a try; no planned
-- row is one) has its own small index. Unlike PostgreSQL's, a SQLite index ends in the rowid
-- (`id`), so `(due_at)` already serves `ORDER BY due_at, id`.
CREATE INDEX deliveries_retrying ON deliveries (due_at) WHERE status = 'queued' AND attempts > 0;
DROP INDEX deliveries_active;
