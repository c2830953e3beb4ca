-- Retention: finished deliveries are deleted by status and age (updated_at), a batch at a time.
-- Each status has its own partial index on updated_at, so a pass reads only expired rows.
-- 'failed' has one already (deliveries_failed, in 0001).
CREATE INDEX deliveries_sent_age ON deliveries (updated_at) WHERE status = 'sent';
CREATE INDEX deliveries_skipped_age ON deliveries (updated_at) WHERE status = 'skipped';
