-- Herald's source contract over the NestJS/Prisma schema in schema.sql (PostgreSQL).
-- Apply after the app's migrations, and again whenever they change these tables:
--   psql "$APP_DATABASE_URL" -v ON_ERROR_STOP=1 -f views.sql
-- Soft-deleted rows ("deletedAt" set) are left out; so are the tasks and focus sessions of
-- soft-deleted users. A task without a due date has due_at NULL.

CREATE OR REPLACE VIEW herald_users AS
SELECT u."id"::text         AS id,
       u."email"::text      AS email,
       u."name"::text       AS display_name,
       u."timeZone"::text   AS time_zone,
       u."locale"::text     AS locale,
       u."isActive"         AS active
FROM "User" u
WHERE u."deletedAt" IS NULL;

CREATE OR REPLACE VIEW herald_tasks AS
SELECT t."id"::text                      AS id,
       t."userId"::text                  AS user_id,
       t."title"::text                   AS title,
       t."dueDate"::timestamptz          AS due_at,
       t."completedAt"::timestamptz      AS completed_at,
       ('/tasks/' || t."id")::text       AS link_path
FROM "Task" t
JOIN "User" u ON u."id" = t."userId" AND u."deletedAt" IS NULL
WHERE t."deletedAt" IS NULL;

CREATE OR REPLACE VIEW herald_focus_sessions AS
SELECT f."id"::text                  AS id,
       f."userId"::text              AS user_id,
       f."startedAt"::timestamptz    AS started_at,
       f."durationMinutes"::integer  AS minutes
FROM "FocusSession" f
JOIN "User" u ON u."id" = f."userId" AND u."deletedAt" IS NULL;
