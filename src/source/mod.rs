//! The app's data, read where it lives: users, tasks and focus sessions, through the source
//! contract, from PostgreSQL, MariaDB/MySQL or SQLite. Read-only: every session is opened read-only, and
//! Herald never writes to the app's database (`herald seed` fills a demo, through its own
//! connection, see [`demo`]).
//!
//! # The contract
//!
//! Three relations with fixed names and columns, which the app's team writes once as views over
//! its own tables ([`RELATIONS`]; the README has them as a table, `examples/` has two apps'
//! views). Ids are text: bigint, UUID and cuid all fit. Rows the app has soft-deleted are left
//! out by the views; a user who is not `active` gets nothing.
//!
//! # Reading at scale
//!
//! The planner reads the users of a fire in one query, streamed in pages of [`PAGE`] rows with
//! back-pressure ([`Source::user_pages`]), so that a million users neither sit in memory nor
//! cost a sort per page; each page's tasks and focus sessions are then read by owner
//! (`user_id IN (…)`), which the app's index on the owner column serves.

pub mod check;
mod contract;
pub mod demo;
#[macro_use]
mod dialect;

pub use contract::{Column, ColumnType, RELATIONS, Relation};
use dialect::{Instants, PushIn};

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{
    MySql, MySqlPool, PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool,
    mysql::MySqlConnectOptions, postgres::PgConnectOptions, sqlite::SqliteConnectOptions,
};

use crate::config::redact;

/// The pool settings every pool of Herald's shares: its state's and the source's.
pub(crate) fn pool_options<DB: sqlx::Database>(
    max_connections: u32,
) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx warns on every acquire slower than 2 s: during a PostgreSQL restart that is one
        // line per waiting worker. Herald logs the outage once instead (`health`). sqlx logs
        // through `log`, whose records tracing's target filters do not reach.
        .acquire_slow_level(log::LevelFilter::Debug)
        // A connection's buffers grow to its largest message (a planner INSERT, a page of
        // users) and would keep that size while idle in the pool; back to 8 KB when released.
        .after_release(|conn, _| {
            Box::pin(async move {
                sqlx::Connection::shrink_buffers(conn);
                Ok(true)
            })
        })
}

/// What each pool's connections are called in `pg_stat_activity` (their `application_name`),
/// after the name the URL gives (`?application_name=`, or `PGAPPNAME`), else `herald`: the
/// workers' pool (`Store::pool`) is `herald workers`, the reserved one (`Store::reserved`)
/// `herald reserved`, and the source's (PostgreSQL only) `herald source`. PostgreSQL keeps the
/// first 63 bytes.
pub fn application_name(given: Option<&str>, pool: &str) -> String {
    let base = given
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .unwrap_or("herald");
    format!("{base} {pool}")
}

/// The pools' own part of [`application_name`].
pub const WORKERS_POOL: &str = "workers";
pub const RESERVED_POOL: &str = "reserved";
pub const SOURCE_POOL: &str = "source";

/// A source connection unused this long is closed: the planner holds them only while planning.
const IDLE: Duration = Duration::from_secs(60);

/// A SQLite source connection's page cache, in KiB (see [`Source::connect`]).
const SQLITE_CACHE_KIB: u32 = 256;

/// Users per page of the planner.
pub const PAGE: usize = 1000;

/// A user of the app, as `herald_users` gives them (only active ones are read).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// `None` or empty: the schedule's fallback zone.
    pub time_zone: Option<String>,
    pub locale: Option<String>,
}

/// Which open tasks to read, a page at a time: due in `(from, to]`, of `owner` when given,
/// after the `(due_at, id)` of the previous page's last task.
#[derive(Debug, Clone)]
pub struct TaskPage<'a> {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub owner: Option<&'a str>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: usize,
}

/// A task, as `herald_tasks` gives it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub link_path: Option<String>,
}

/// A focus session, as `herald_focus_sessions` gives it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FocusRow {
    pub user_id: String,
    pub started_at: DateTime<Utc>,
    pub minutes: i64,
}

/// Which users a fire reads.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// One user only.
    pub only: Option<String>,
    /// Only users whose stored zone is one of these (`""` stands for NULL).
    pub zones: Option<Vec<String>>,
}

/// A connection pool to the app's database, read-only.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    MySql(MySqlPool),
    /// The embedded mode's file (its demo tables and their views), or an app's own SQLite file.
    Sqlite(SqlitePool),
}

/// The app's database, read-only.
#[derive(Debug, Clone)]
pub struct Source {
    pub db: Db,
}

const USER_COLUMNS: &str = "id, email, display_name, time_zone, locale";
const TASK_COLUMNS: &str = "id, user_id, title, due_at, completed_at, link_path";

impl Source {
    /// Connects to the app's database at `url` (`postgres://…` or `mysql://…`/`mariadb://…`),
    /// read-only.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Source> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => {
                let options: PgConnectOptions = url
                    .parse::<PgConnectOptions>()
                    .with_context(|| format!("source.url {} is not a PostgreSQL URL", redact(url)))?
                    .options([("default_transaction_read_only", "on")]);
                let name = application_name(options.get_application_name(), SOURCE_POOL);
                let options = options.application_name(&name);
                let pool = pool_options::<Postgres>(max_connections)
                    .idle_timeout(IDLE)
                    .connect_lazy_with(options);
                Ok(Source {
                    db: Db::Postgres(pool),
                })
            }
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let options: MySqlConnectOptions = url.parse().with_context(|| {
                    format!("source.url {} is not a MySQL/MariaDB URL", redact(&url))
                })?;
                let pool = pool_options::<MySql>(max_connections)
                    .idle_timeout(IDLE)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                &mut *conn,
                                "SET SESSION TRANSACTION READ ONLY",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options);
                Ok(Source {
                    db: Db::MySql(pool),
                })
            }
            "sqlite" => {
                let options: SqliteConnectOptions = url.parse().with_context(|| {
                    format!(
                        "source.url {} is not a SQLite URL (sqlite://path/to/file.db)",
                        redact(url)
                    )
                })?;
                let pool = pool_options::<Sqlite>(max_connections)
                    .idle_timeout(IDLE)
                    .connect_lazy_with(
                        options
                            .read_only(true)
                            .busy_timeout(Duration::from_secs(10))
                            // The planner reads each page's rows once, in index order: a small
                            // cache keeps the indexes' inner pages, and the file's pages stay in
                            // the operating system's cache (SQLite's default, 2 MB a connection,
                            // filled up during every fire).
                            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}")),
                    );
                Ok(Source {
                    db: Db::Sqlite(pool),
                })
            }
            _ => anyhow::bail!(
                "source.url {} is neither PostgreSQL (postgres://…), MariaDB/MySQL (mysql://…) nor SQLite (sqlite://…); point it at the database that holds the herald_users, herald_tasks and herald_focus_sessions views",
                redact(url)
            ),
        }
    }

    /// Whether the source is MariaDB/MySQL (else PostgreSQL).
    pub fn is_mysql(&self) -> bool {
        matches!(self.db, Db::MySql(_))
    }

    /// The active users that `filter` selects, in pages of [`PAGE`], streamed from one query:
    /// the next page is read while the planner works on this one, and no further (a channel of
    /// two pages holds the query back).
    pub fn user_pages(
        &self,
        filter: UserFilter,
    ) -> tokio::sync::mpsc::Receiver<anyhow::Result<Vec<UserRow>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let source = self.clone();
        tokio::spawn(async move {
            let send = |page| tx.send(page);
            let result = on_source!(source, |pool, qb| {
                qb.push(format!(
                    "SELECT {USER_COLUMNS} FROM herald_users WHERE active"
                ));
                if let Some(id) = &filter.only {
                    qb.push(" AND id = ").push_bind(id.clone());
                }
                if let Some(zones) = &filter.zones {
                    qb.push(" AND COALESCE(time_zone, '')");
                    qb.push_in(zones);
                }
                // In id order: the same order every time, which the app's primary key serves.
                qb.push(" ORDER BY id");
                let mut rows = qb.build_query_as::<UserRow>().fetch(pool);
                let mut page = Vec::with_capacity(PAGE);
                loop {
                    match rows.try_next().await {
                        Ok(Some(user)) => {
                            page.push(user);
                            if page.len() == PAGE
                                && send(Ok(std::mem::replace(&mut page, Vec::with_capacity(PAGE))))
                                    .await
                                    .is_err()
                            {
                                break Ok(());
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                .map(|()| page)
            });
            match result {
                Ok(last) if !last.is_empty() => {
                    let _ = send(Ok(last)).await; // the planner may have stopped listening
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = send(Err(
                        anyhow::Error::new(e).context("cannot read herald_users")
                    ))
                    .await;
                }
            }
        });
        rx
    }

    /// The active users among `ids`.
    pub async fn users(&self, ids: &[String]) -> sqlx::Result<Vec<UserRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        on_source!(self, |pool, qb| {
            qb.push(format!(
                "SELECT {USER_COLUMNS} FROM herald_users WHERE active AND id"
            ));
            qb.push_in(ids);
            qb.build_query_as::<UserRow>().fetch_all(pool).await
        })
    }

    /// One active user.
    pub async fn user(&self, id: &str) -> sqlx::Result<Option<UserRow>> {
        Ok(self.users(&[id.to_owned()]).await?.pop())
    }

    /// Every zone string active users have (`""` for NULL), valid or not.
    pub async fn time_zones(&self) -> sqlx::Result<Vec<String>> {
        let sql = "SELECT DISTINCT COALESCE(time_zone, '') FROM herald_users WHERE active";
        match &self.db {
            Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Db::MySql(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
    }

    /// Open tasks of these users due in `[from, to)`.
    pub async fn open_tasks_due(
        &self,
        owners: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<TaskRow>> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        on_source!(self, |pool, qb| {
            qb.push(format!(
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE completed_at IS NULL AND "
            ));
            qb.push_column("due_at").push(" >= ").push_instant(from);
            qb.push(" AND ")
                .push_column("due_at")
                .push(" < ")
                .push_instant(to);
            qb.push(" AND user_id");
            qb.push_in(owners);
            qb.push(" ORDER BY user_id, due_at, id");
            qb.build_query_as::<TaskRow>().fetch_all(pool).await
        })
    }

    /// One page of the open tasks of every user (or of `page.owner`) due in `(from, to]`, by due
    /// time then id, after `page.after`: the tasks whose reminder falls due between two planner
    /// ticks. The app's tasks table wants an index on its due column for this (see the
    /// examples).
    pub async fn open_tasks_due_between(&self, page: &TaskPage<'_>) -> sqlx::Result<Vec<TaskRow>> {
        on_source!(self, |pool, qb| {
            qb.push(format!(
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE completed_at IS NULL AND "
            ));
            qb.push_column("due_at").push(" > ").push_instant(page.from);
            qb.push(" AND ")
                .push_column("due_at")
                .push(" <= ")
                .push_instant(page.to);
            if let Some((due, id)) = &page.after {
                qb.push(" AND (").push_column("due_at").push(", id) > (");
                qb.push_instant(*due)
                    .push(", ")
                    .push_bind(id.clone())
                    .push(")");
            }
            if let Some(owner) = page.owner {
                qb.push(" AND user_id = ").push_bind(owner.to_owned());
            }
            qb.push(" ORDER BY ")
                .push_column("due_at")
                .push(", id LIMIT ")
                .push_bind(page.limit as i64);
            qb.build_query_as::<TaskRow>().fetch_all(pool).await
        })
    }

    /// In one query, tasks of these users that are open and due before `due_before`, and tasks
    /// completed in `[from, to)`, ordered by owner, then due time, then id (a week's report
    /// wants both, and reading each owner's tasks once costs the database half as much).
    pub async fn open_due_or_completed(
        &self,
        owners: &[String],
        due_before: DateTime<Utc>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<TaskRow>> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        on_source!(self, |pool, qb| {
            qb.push(format!(
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE ((completed_at IS NULL AND "
            ));
            qb.push_column("due_at")
                .push(" < ")
                .push_instant(due_before);
            qb.push(") OR (")
                .push_column("completed_at")
                .push(" >= ")
                .push_instant(from);
            qb.push(" AND ")
                .push_column("completed_at")
                .push(" < ")
                .push_instant(to);
            qb.push(")) AND user_id");
            qb.push_in(owners);
            qb.push(" ORDER BY user_id, due_at, id");
            qb.build_query_as::<TaskRow>().fetch_all(pool).await
        })
    }

    /// Focus sessions of these users started in `[from, to)`.
    pub async fn focus_sessions(
        &self,
        owners: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<FocusRow>> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let minutes = match self.db {
            Db::Postgres(_) => "minutes::bigint",
            Db::MySql(_) => "CAST(minutes AS SIGNED)",
            Db::Sqlite(_) => "CAST(minutes AS INTEGER)",
        };
        on_source!(self, |pool, qb| {
            qb.push(format!(
                "SELECT user_id, started_at, {minutes} AS minutes FROM herald_focus_sessions WHERE "
            ));
            qb.push_column("started_at").push(" >= ").push_instant(from);
            qb.push(" AND ")
                .push_column("started_at")
                .push(" < ")
                .push_instant(to);
            qb.push(" AND user_id");
            qb.push_in(owners);
            qb.build_query_as::<FocusRow>().fetch_all(pool).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pool_is_named_after_the_urls_application_name_else_herald() {
        assert_eq!(application_name(None, WORKERS_POOL), "herald workers");
        assert_eq!(
            application_name(Some("  "), RESERVED_POOL),
            "herald reserved"
        );
        assert_eq!(
            application_name(Some("billing"), SOURCE_POOL),
            "billing source"
        );
    }
}
