-- Example host app: a Laravel app on SQLite, Laravel's default database (the tables as its
-- migrations create them on SQLite with `$table->id()`, `foreignId()->constrained()`,
-- `timestamps()` and `softDeletes()`). Laravel writes instants as 'YYYY-MM-DD HH:MM:SS' text in
-- the app's timezone, here config('app.timezone') = 'UTC'.
-- Herald never writes to these tables; see views.sql.

CREATE TABLE users (
    id                INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name              VARCHAR NOT NULL,
    email             VARCHAR NOT NULL,
    timezone          VARCHAR,                -- IANA name; NULL: the app's default, UTC
    locale            VARCHAR,                -- e.g. 'en', 'pt_BR' or 'pt-BR'
    email_verified_at DATETIME,
    password          VARCHAR NOT NULL,
    remember_token    VARCHAR,
    created_at        DATETIME,
    updated_at        DATETIME,
    deleted_at        DATETIME
);
CREATE UNIQUE INDEX users_email_unique ON users (email);

CREATE TABLE tasks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        VARCHAR NOT NULL,
    due_at       DATETIME,
    completed_at DATETIME,
    created_at   DATETIME,
    updated_at   DATETIME,
    deleted_at   DATETIME
);
CREATE INDEX tasks_user_id_due_at_index ON tasks (user_id, due_at);
CREATE INDEX tasks_due_at_index ON tasks (due_at);  -- Herald's due_soon reads tasks falling due

CREATE TABLE focus_sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at DATETIME NOT NULL,
    minutes    INTEGER NOT NULL,
    created_at DATETIME,
    updated_at DATETIME
);
CREATE INDEX focus_sessions_user_id_started_at_index ON focus_sessions (user_id, started_at);
