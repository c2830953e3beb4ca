//! The demo app in PostgreSQL: its tables in the schema `herald_demo`, their ids from one
//! sequence, and each of [`super::Demo`]'s operations as one statement over arrays (`UNNEST`,
//! `= ANY($1)`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{NewTask, NewUser, RemovedUsers};

/// The demo's tables and the contract's views over them; safe to run again.
const SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS herald_demo;
CREATE SEQUENCE IF NOT EXISTS herald_demo.ids;
CREATE TABLE IF NOT EXISTS herald_demo.users (
    id           TEXT PRIMARY KEY DEFAULT nextval('herald_demo.ids')::text,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    timezone     TEXT,
    locale       TEXT,
    active       BOOLEAN NOT NULL DEFAULT true,
    deleted_at   TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS herald_demo.tasks (
    id           TEXT PRIMARY KEY DEFAULT nextval('herald_demo.ids')::text,
    owner_id     TEXT NOT NULL REFERENCES herald_demo.users (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    due_at       TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS tasks_owner ON herald_demo.tasks (owner_id, due_at);
CREATE INDEX IF NOT EXISTS tasks_due ON herald_demo.tasks (due_at);
CREATE TABLE IF NOT EXISTS herald_demo.focus_sessions (
    id         TEXT PRIMARY KEY DEFAULT nextval('herald_demo.ids')::text,
    owner_id   TEXT NOT NULL REFERENCES herald_demo.users (id) ON DELETE CASCADE,
    started_at TIMESTAMPTZ NOT NULL,
    minutes    INTEGER NOT NULL CHECK (minutes >= 0)
);
CREATE INDEX IF NOT EXISTS focus_sessions_owner ON herald_demo.focus_sessions (owner_id, started_at);

CREATE OR REPLACE VIEW herald_users AS
    SELECT id, email, display_name, timezone AS time_zone, locale, active
    FROM herald_demo.users WHERE deleted_at IS NULL;
CREATE OR REPLACE VIEW herald_tasks AS
    SELECT t.id, t.owner_id AS user_id, t.title, t.due_at, t.completed_at, '/tasks/' || t.id AS link_path
    FROM herald_demo.tasks t WHERE t.deleted_at IS NULL;
CREATE OR REPLACE VIEW herald_focus_sessions AS
    SELECT id, owner_id AS user_id, started_at, minutes FROM herald_demo.focus_sessions;
"#;

pub(super) async fn has_views(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT to_regclass('herald_users') IS NOT NULL")
        .fetch_one(pool)
        .await
}

pub(super) async fn install(pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    install_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// [`install`] inside a transaction the caller holds.
pub(super) async fn install_in(tx: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald:demo'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *tx)
        .await
        .context("cannot create the demo's tables and views (herald_demo, herald_users, herald_tasks, herald_focus_sessions)")?;
    Ok(())
}

pub(super) async fn insert_users(pool: &PgPool, users: &[NewUser]) -> sqlx::Result<Vec<String>> {
    let column = |f: fn(&NewUser) -> Option<String>| users.iter().map(f).collect::<Vec<_>>();
    sqlx::query_scalar(
        "INSERT INTO herald_demo.users (email, display_name, timezone, locale)
         SELECT email, display_name, timezone, locale
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
              AS t (email, display_name, timezone, locale, n)
         ORDER BY n
         RETURNING id",
    )
    .bind(column(|u| Some(u.email.clone())))
    .bind(column(|u| Some(u.display_name.clone())))
    .bind(column(|u| Some(u.timezone.clone())))
    .bind(column(|u| u.locale.clone()))
    .fetch_all(pool)
    .await
}

pub(super) async fn insert_tasks(pool: &PgPool, tasks: &[NewTask]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "INSERT INTO herald_demo.tasks (owner_id, title, due_at, completed_at)
         SELECT owner_id, title, due_at, completed_at
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY
              AS t (owner_id, title, due_at, completed_at, n)
         ORDER BY n
         RETURNING id",
    )
    .bind(tasks.iter().map(|t| t.owner_id.clone()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.title.clone()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.due_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.completed_at).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
}

pub(super) async fn insert_focus_sessions(
    pool: &PgPool,
    sessions: &[(String, DateTime<Utc>, i32)],
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO herald_demo.focus_sessions (owner_id, started_at, minutes)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int[])",
    )
    .bind(sessions.iter().map(|s| s.0.clone()).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(sessions.iter().map(|s| s.2).collect::<Vec<_>>())
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn soft_delete_user(pool: &PgPool, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE herald_demo.users SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

pub(super) async fn max_seeded_index(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE(max(substring(email from '^user([0-9]+)@example\\.com$')::bigint), 0)
         FROM herald_demo.users",
    )
    .fetch_one(pool)
    .await
}

pub(super) async fn count_users(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM herald_demo.users")
        .fetch_one(pool)
        .await
}

pub(super) async fn delete_users_matching(
    pool: &PgPool,
    pattern: &str,
) -> sqlx::Result<RemovedUsers> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM herald_demo.users WHERE email ~ $1 ORDER BY id FOR UPDATE",
    )
    .bind(pattern)
    .fetch_all(&mut *tx)
    .await?;
    let mut removed = RemovedUsers::default();
    for (table, count) in [
        ("tasks", &mut removed.tasks),
        ("focus_sessions", &mut removed.focus_sessions),
    ] {
        *count = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM herald_demo.{table} WHERE owner_id = ANY($1)"
        )))
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    sqlx::query("DELETE FROM herald_demo.users WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    removed.ids = ids;
    Ok(removed)
}
