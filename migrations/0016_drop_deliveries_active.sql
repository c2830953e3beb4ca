-- Every planned delivery entered `deliveries_active` (0007): the dashboard's index of queued and
-- sending rows by due time. A million planned rows spent 0.6-1.0 CPU seconds of PostgreSQL's on
-- it when they fell due at a few instants (a weekly report in 40 zones), about 2.5 when a spread
-- gave them one instant a second (BENCHMARKS.md, "Dropping `deliveries_active`"). The dashboard
-- now reads the same rows through the dispatcher's partial indexes (0001), which partition them:
--   queued, not yet in Redis   `deliveries_due`        (due_at)
--   queued, pushed to Redis    `deliveries_dispatched` (dispatched_at)
--   being sent                 `deliveries_lease`      (lease_until)
-- The Queued list and the overview's counts and oldest due email read the first two and merge
-- them; the Sending list and a dead worker's claims (0011) read the third.
--
-- The Retrying list (queued after a try) has an index of its own: its rows are a handful beside
-- a fire's million queued ones, due in no particular place among them, and in no other index by
-- `attempts`. No planned row enters it (a planned row has had no try: attempts = 0), so it adds
-- nothing to a fire's insert; a row enters it when it is queued again after a try.
CREATE INDEX deliveries_retrying ON deliveries (due_at, id) WHERE status = 'queued' AND attempts > 0;
DROP INDEX deliveries_active;
