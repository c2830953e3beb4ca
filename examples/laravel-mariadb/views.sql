-- Herald's source contract over the Laravel schema in schema.sql (MariaDB 10.11).
-- Apply after the app's migrations, and again whenever they change these tables:
--   mariadb -h HOST -u USER -p APP_DATABASE < views.sql
-- Ids are BIGINT UNSIGNED in the app and text in the contract: CAST(id AS CHAR), in utf8mb4
-- whatever the character set of the session that creates the views. Soft-deleted rows
-- (deleted_at set) are left out; so are the tasks and focus sessions of soft-deleted users.
-- due_at (NULL: no due date), completed_at and started_at are DATETIME holding UTC (the app's
-- timezone is UTC). A NULL users.timezone means the app's default, UTC. Every user left in the
-- view gets email: active is TRUE.

CREATE OR REPLACE VIEW herald_users AS
SELECT CAST(u.id AS CHAR CHARACTER SET utf8mb4)       AS id,
       u.email                                        AS email,
       u.name                                         AS display_name,
       COALESCE(u.timezone, 'UTC')                    AS time_zone,
       u.locale                                       AS locale,
       TRUE                                           AS active
FROM users u
WHERE u.deleted_at IS NULL;

CREATE OR REPLACE VIEW herald_tasks AS
SELECT CAST(t.id AS CHAR CHARACTER SET utf8mb4)       AS id,
       CAST(t.user_id AS CHAR CHARACTER SET utf8mb4)  AS user_id,
       t.title                                        AS title,
       t.due_at                                       AS due_at,
       t.completed_at                                 AS completed_at,
       CONCAT(_utf8mb4'/tasks/', t.id)                AS link_path
FROM tasks t
JOIN users u ON u.id = t.user_id AND u.deleted_at IS NULL
WHERE t.deleted_at IS NULL;

CREATE OR REPLACE VIEW herald_focus_sessions AS
SELECT CAST(f.id AS CHAR CHARACTER SET utf8mb4)       AS id,
       CAST(f.user_id AS CHAR CHARACTER SET utf8mb4)  AS user_id,
       f.started_at                                   AS started_at,
       CAST(f.minutes AS SIGNED)                      AS minutes
FROM focus_sessions f
JOIN users u ON u.id = f.user_id AND u.deleted_at IS NULL;
