-- Herald's source contract over the Laravel schema in schema.sql, on SQLite.
-- Apply after the app's migrations, and again whenever they change these tables:
--   sqlite3 database/database.sqlite < views.sql
-- Ids are INTEGER in the app and text in the contract: CAST(id AS TEXT). Soft-deleted rows
-- (deleted_at set) are left out; so are the tasks and focus sessions of soft-deleted users.
-- due_at (NULL: no due date), completed_at and started_at stay as Laravel writes them
-- ('YYYY-MM-DD HH:MM:SS', UTC): Herald compares SQLite instants through strftime, which reads
-- that form as well as RFC 3339. A NULL users.timezone means the app's default, UTC. Every user
-- left in the view gets email: active is 1.

DROP VIEW IF EXISTS herald_users;
CREATE VIEW herald_users AS
SELECT CAST(u.id AS TEXT)                AS id,
       u.email                           AS email,
       u.name                            AS display_name,
       COALESCE(u.timezone, 'UTC')       AS time_zone,
       u.locale                          AS locale,
       1                                 AS active
FROM users u
WHERE u.deleted_at IS NULL;

DROP VIEW IF EXISTS herald_tasks;
CREATE VIEW herald_tasks AS
SELECT CAST(t.id AS TEXT)                AS id,
       CAST(t.user_id AS TEXT)           AS user_id,
       t.title                           AS title,
       t.due_at                          AS due_at,
       t.completed_at                    AS completed_at,
       '/tasks/' || t.id                 AS link_path
FROM tasks t
JOIN users u ON u.id = t.user_id AND u.deleted_at IS NULL
WHERE t.deleted_at IS NULL;

DROP VIEW IF EXISTS herald_focus_sessions;
CREATE VIEW herald_focus_sessions AS
SELECT CAST(f.id AS TEXT)                AS id,
       CAST(f.user_id AS TEXT)           AS user_id,
       f.started_at                      AS started_at,
       f.minutes                         AS minutes
FROM focus_sessions f
JOIN users u ON u.id = f.user_id AND u.deleted_at IS NULL;
