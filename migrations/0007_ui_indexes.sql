-- The dashboard (/ui). Its overview must stay fast with a day of deliveries on record:
-- sent and failed by kind and provider over the last hour and day, and per minute over the hour;
CREATE INDEX deliveries_finished_recent ON deliveries (updated_at) INCLUDE (kind, provider, status)
    WHERE status IN ('sent', 'failed');
-- what is queued, retrying or being sent (a small part of the table);
CREATE INDEX deliveries_active ON deliveries (status, due_at) WHERE status IN ('queued', 'sending');
-- each schedule's last fire: the newest planned_for of a kind, and its deliveries.
CREATE INDEX deliveries_kind_planned ON deliveries (kind, planned_for);
