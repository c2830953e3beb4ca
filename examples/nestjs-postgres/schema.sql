-- Example host app: a NestJS API with Prisma on PostgreSQL (the tables as `prisma migrate`
-- creates them: quoted PascalCase tables, camelCase columns, text ids holding UUIDs or cuids,
-- soft delete through "deletedAt"). Herald never writes to these tables; see views.sql.

CREATE TABLE "User" (
    "id"        TEXT PRIMARY KEY,
    "email"     TEXT NOT NULL,
    "name"      TEXT NOT NULL,
    "timeZone"  TEXT NOT NULL DEFAULT 'UTC',         -- IANA name, e.g. 'Europe/Paris'
    "locale"    TEXT,                                -- BCP 47, e.g. 'fr-FR'; NULL: not chosen
    "isActive"  BOOLEAN NOT NULL DEFAULT TRUE,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deletedAt" TIMESTAMPTZ(3)
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");

CREATE TABLE "Task" (
    "id"          TEXT PRIMARY KEY,
    "userId"      TEXT NOT NULL REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    "title"       TEXT NOT NULL,
    "dueDate"     TIMESTAMPTZ(3),
    "completedAt" TIMESTAMPTZ(3),
    "createdAt"   TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt"   TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deletedAt"   TIMESTAMPTZ(3)
);
CREATE INDEX "Task_userId_idx" ON "Task"("userId");
CREATE INDEX "Task_userId_dueDate_idx" ON "Task"("userId", "dueDate");
-- Herald's due_soon reads the tasks falling due on every tick, across users.
CREATE INDEX "Task_dueDate_idx" ON "Task"("dueDate");

CREATE TABLE "FocusSession" (
    "id"              TEXT PRIMARY KEY,
    "userId"          TEXT NOT NULL REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    "startedAt"       TIMESTAMPTZ(3) NOT NULL,
    "durationMinutes" INTEGER NOT NULL CHECK ("durationMinutes" >= 0),
    "createdAt"       TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX "FocusSession_userId_startedAt_idx" ON "FocusSession"("userId", "startedAt");
