-- Schedules an operator has paused (`POST /api/schedules/{name}/pause`, `herald pause`, the
-- dashboard): the planner skips them and moves their watermark on, so the fires of a pause are
-- never sent late after it. A row per paused schedule; resuming deletes it. Kept apart from
-- schedule_watermarks, which only the planner writes, under its lock.
CREATE TABLE schedule_pauses (
    schedule  TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason    TEXT
);
