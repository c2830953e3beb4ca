-- Herald's own state lives in a schema of its own (`herald`; every connection of the state pool
-- has it as its search_path), apart from the app's data, which Herald reads through the source
-- contract (`herald_users`, `herald_tasks`, `herald_focus_sessions`) and never writes.
--
-- Users are the app's: their ids are text (bigint, UUID and cuid all fit), and no foreign key runs
-- from Herald's state into the source. A user deleted in the app is skipped when claimed.

ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_user_id_fkey;
ALTER TABLE deliveries ALTER COLUMN user_id TYPE TEXT USING user_id::text;

ALTER TABLE email_opt_outs DROP CONSTRAINT IF EXISTS email_opt_outs_user_id_fkey;
ALTER TABLE email_opt_outs ALTER COLUMN user_id TYPE TEXT USING user_id::text;

-- The app tables that 0001 created beside the state on a new install. An install upgraded from
-- before this migration had them in `public`, where they stay untouched (only Herald's own
-- tables were moved into this schema).
DROP TABLE IF EXISTS focus_sessions, tasks, users;

-- No index on user_id: every row version an email writes (planned, dispatched, claimed,
-- recorded) would pay for it, and only `herald seed --reset` looks rows up by user.
