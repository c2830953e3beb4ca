-- Herald's source contract over the NestJS/Prisma schema in schema.sql (PostgreSQL).
-- Apply after the app's migrations, and again whenever they change these tables:
--   psql "$APP_DATABASE_URL" -v ON_ERROR_STOP=1 -f views.sql
-- Soft-deleted rows ("deletedAt" set) are left out. A task without a due date has due_at NULL.
-- Herald reads tasks and focus sessions only for the users herald_users gives, so the tasks of a
-- soft-deleted user need no join here. The columns are passed through as they are (text ids,
-- timestamptz): a cast in a view would keep PostgreSQL from using the tables' indexes.

CREATE OR REPLACE VIEW herald_users AS
SELECT u."id"         AS id,
       u."email"      AS email,
       u."name"       AS display_name,
       u."timeZone"   AS time_zone,
       u."locale"     AS locale,
       u."isActive"   AS active
FROM "User" u
WHERE u."deletedAt" IS NULL;

CREATE OR REPLACE VIEW herald_tasks AS
SELECT t."id"                      AS id,
       t."userId"                  AS user_id,
       t."title"                   AS title,
       t."dueDate"                 AS due_at,
       t."completedAt"             AS completed_at,
       '/tasks/' || t."id"         AS link_path
FROM "Task" t
WHERE t."deletedAt" IS NULL;

CREATE OR REPLACE VIEW herald_focus_sessions AS
SELECT f."id"                  AS id,
       f."userId"              AS user_id,
       f."startedAt"           AS started_at,
       f."durationMinutes"     AS minutes
FROM "FocusSession" f;
