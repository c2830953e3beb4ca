//! The demo app in a SQLite file: the embedded mode's `herald.db`, beside Herald's own state.
//!
//! SQLite has no schemas, so the demo's tables are prefixed instead (`herald_demo_users`,
//! `herald_demo_tasks`, `herald_demo_focus_sessions`, `herald_demo_ids`): no name of Herald's
//! state (its tables, the queue's) starts so. No sequences either: one counter row
//! (`herald_demo_ids`) hands out the ids, shared by the three tables as PostgreSQL's sequence
//! is, in blocks taken in the inserting transaction. Instants are text in one fixed form, RFC
//! 3339 UTC to the millisecond (`2026-12-06T09:00:00.000Z`), the very form the source compares
//! them in (`strftime('%Y-%m-%dT%H:%M:%fZ', …)`, see `source::dialect`), so text order is time
//! order. A list of rows travels as one JSON parameter (`json_each`), where PostgreSQL takes
//! arrays; an email pattern is matched by `REGEXP`, which each connection registers (sqlx's
//! `regexp`, the `regex` crate's syntax).

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::{
    SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

use super::{NewTask, NewUser, RemovedUsers};
use crate::config::redact;

/// The demo's tables and the contract's views over them; safe to run again (a view that exists
/// already, the demo's or the app's own, is left as it is).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS herald_demo_ids (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO herald_demo_ids (one, last) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS herald_demo_users (
    id           TEXT NOT NULL PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    timezone     TEXT,
    locale       TEXT,
    active       BOOLEAN NOT NULL DEFAULT 1,
    deleted_at   TEXT
);
CREATE TABLE IF NOT EXISTS herald_demo_tasks (
    id           TEXT NOT NULL PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES herald_demo_users (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    due_at       TEXT,
    completed_at TEXT,
    deleted_at   TEXT
);
CREATE INDEX IF NOT EXISTS herald_demo_tasks_owner ON herald_demo_tasks (owner_id, due_at);
CREATE INDEX IF NOT EXISTS herald_demo_tasks_due ON herald_demo_tasks (due_at);
CREATE TABLE IF NOT EXISTS herald_demo_focus_sessions (
    id         TEXT NOT NULL PRIMARY KEY,
    owner_id   TEXT NOT NULL REFERENCES herald_demo_users (id) ON DELETE CASCADE,
    started_at TEXT NOT NULL,
    minutes    INTEGER NOT NULL CHECK (minutes >= 0)
);
CREATE INDEX IF NOT EXISTS herald_demo_focus_sessions_owner
    ON herald_demo_focus_sessions (owner_id, started_at);

CREATE VIEW IF NOT EXISTS herald_users AS
    SELECT id, email, display_name, timezone AS time_zone, locale, active
    FROM herald_demo_users WHERE deleted_at IS NULL;
CREATE VIEW IF NOT EXISTS herald_tasks AS
    SELECT t.id, t.owner_id AS user_id, t.title, t.due_at, t.completed_at, '/tasks/' || t.id AS link_path
    FROM herald_demo_tasks t WHERE t.deleted_at IS NULL;
CREATE VIEW IF NOT EXISTS herald_focus_sessions AS
    SELECT id, owner_id AS user_id, started_at, minutes FROM herald_demo_focus_sessions;
"#;

/// The seeded addresses' numbers: `user<N>@example.com`, N after `user` (4 characters) and
/// before `@example.com` (12).
const SEEDED_INDEX: &str = "CAST(substr(email, 5, length(email) - 16) AS INTEGER)";

/// The one form the demo writes instants in (see the module's doc).
pub(super) fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Opens the file at `url` (`sqlite://path`), creating it and its folder if missing. One
/// connection: the demo's writes queue in the process, and wait for Herald's (the same file's
/// state) at most the busy timeout.
pub(super) async fn connect(url: &str) -> anyhow::Result<SqlitePool> {
    let options: SqliteConnectOptions = url.parse().with_context(|| {
        format!(
            "{} is not a SQLite URL (sqlite://path/to/file.db)",
            redact(url)
        )
    })?;
    if let Some(dir) = options
        .get_filename()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}, the demo's folder", dir.display()))?;
    }
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .with_regexp();
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the demo's SQLite file at {}", redact(url)))
}

pub(super) async fn has_views(pool: &SqlitePool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type IN ('view', 'table') AND name = 'herald_users')",
    )
    .fetch_one(pool)
    .await
}

pub(super) async fn install(pool: &SqlitePool) -> anyhow::Result<()> {
    // IMMEDIATE: two installers one after the other, never one refused its upgrade to writer.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *tx)
        .await
        .context("cannot create the demo's tables and views (herald_demo_users, herald_demo_tasks, herald_demo_focus_sessions, herald_users, herald_tasks, herald_focus_sessions)")?;
    tx.commit().await?;
    Ok(())
}

/// `n` fresh ids, in order, from the counter.
async fn take_ids(conn: &mut SqliteConnection, n: usize) -> sqlx::Result<Vec<String>> {
    let n = i64::try_from(n).expect("fewer rows than i64::MAX");
    let last: i64 = sqlx::query_scalar(
        "UPDATE herald_demo_ids SET last = last + ?1 WHERE one = 1 RETURNING last",
    )
    .bind(n)
    .fetch_one(&mut *conn)
    .await?;
    Ok((last - n + 1..=last).map(|id| id.to_string()).collect())
}

/// Inserts `rows` with fresh ids in one transaction: `sql` reads them from `json_each(?1)`, each
/// an array whose first element is the row's id and the rest its columns. The ids, in order.
async fn insert_with_ids(
    pool: &SqlitePool,
    sql: &'static str,
    rows: Vec<Vec<Value>>,
) -> sqlx::Result<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids = take_ids(&mut tx, rows.len()).await?;
    let rows: Vec<Value> = ids
        .iter()
        .zip(rows)
        .map(|(id, mut row)| {
            row.insert(0, id.as_str().into());
            Value::Array(row)
        })
        .collect();
    sqlx::query(sql)
        .bind(Value::Array(rows).to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids)
}

pub(super) async fn insert_users(
    pool: &SqlitePool,
    users: &[NewUser],
) -> sqlx::Result<Vec<String>> {
    let rows = users
        .iter()
        .map(|u| {
            vec![
                json!(u.email),
                json!(u.display_name),
                json!(u.timezone),
                json!(u.locale),
            ]
        })
        .collect();
    insert_with_ids(
        pool,
        "INSERT INTO herald_demo_users (id, email, display_name, timezone, locale)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                json_extract(value, '$[4]')
         FROM json_each(?1)",
        rows,
    )
    .await
}

pub(super) async fn insert_tasks(
    pool: &SqlitePool,
    tasks: &[NewTask],
) -> sqlx::Result<Vec<String>> {
    let rows = tasks
        .iter()
        .map(|t| {
            vec![
                json!(t.owner_id),
                json!(t.title),
                json!(t.due_at.map(instant)),
                json!(t.completed_at.map(instant)),
            ]
        })
        .collect();
    insert_with_ids(
        pool,
        "INSERT INTO herald_demo_tasks (id, owner_id, title, due_at, completed_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                json_extract(value, '$[4]')
         FROM json_each(?1)",
        rows,
    )
    .await
}

pub(super) async fn insert_focus_sessions(
    pool: &SqlitePool,
    sessions: &[(String, DateTime<Utc>, i32)],
) -> sqlx::Result<u64> {
    let rows = sessions
        .iter()
        .map(|(owner, started, minutes)| {
            vec![json!(owner), json!(instant(*started)), json!(minutes)]
        })
        .collect();
    let ids = insert_with_ids(
        pool,
        "INSERT INTO herald_demo_focus_sessions (id, owner_id, started_at, minutes)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                json_extract(value, '$[2]'), json_extract(value, '$[3]')
         FROM json_each(?1)",
        rows,
    )
    .await?;
    Ok(ids.len() as u64)
}

pub(super) async fn soft_delete_user(pool: &SqlitePool, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE herald_demo_users SET deleted_at = ?1 WHERE id = ?2")
        .bind(instant(Utc::now()))
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}

pub(super) async fn max_seeded_index(pool: &SqlitePool) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(max({SEEDED_INDEX}), 0) FROM herald_demo_users
         WHERE email REGEXP '^user[0-9]+@example\\.com$'"
    )))
    .fetch_one(pool)
    .await
}

pub(super) async fn count_users(pool: &SqlitePool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM herald_demo_users")
        .fetch_one(pool)
        .await
}

pub(super) async fn delete_users_matching(
    pool: &SqlitePool,
    pattern: &str,
) -> sqlx::Result<RemovedUsers> {
    // IMMEDIATE: the users read are the users deleted, as PostgreSQL's FOR UPDATE makes sure.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM herald_demo_users WHERE email REGEXP ?1 ORDER BY id")
            .bind(pattern)
            .fetch_all(&mut *tx)
            .await?;
    let list = Value::from(ids.clone()).to_string();
    let mut removed = RemovedUsers::default();
    for (table, count) in [
        ("herald_demo_tasks", &mut removed.tasks),
        ("herald_demo_focus_sessions", &mut removed.focus_sessions),
    ] {
        *count = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE owner_id IN (SELECT value FROM json_each(?1))"
        )))
        .bind(&list)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    sqlx::query("DELETE FROM herald_demo_users WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(&list)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    removed.ids = ids;
    Ok(removed)
}
