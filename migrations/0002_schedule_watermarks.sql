-- How far each schedule has planned: fires at or before planned_up_to are planned (or recorded
-- as skipped). Updated in the same transaction that holds the schedule's advisory lock.
CREATE TABLE schedule_watermarks (
    schedule      TEXT PRIMARY KEY,
    planned_up_to TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The planner reads users zone by zone.
CREATE INDEX users_timezone ON users (timezone, id);
