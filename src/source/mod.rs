//! The app's data, read where it lives: users, tasks and focus sessions, through the source
//! contract, from PostgreSQL or MariaDB/MySQL. Read-only: every session is opened read-only, and
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
pub mod demo;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{
    MySql, MySqlPool, PgPool, Postgres, QueryBuilder, mysql::MySqlConnectOptions,
    postgres::PgConnectOptions,
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

/// Users per page of the planner.
pub const PAGE: usize = 1000;

/// The relations of the contract, with their columns and what each must hold.
pub const RELATIONS: &[Relation] = &[
    Relation {
        name: "herald_users",
        about: "one row per user who may get email",
        columns: &[
            Column::text("id", "the user's id in the app, as text (unique)"),
            Column::text("email", "the address emails go to"),
            Column::text("display_name", "how emails greet them"),
            Column::text_or_null(
                "time_zone",
                "an IANA zone such as Europe/Paris; NULL: the schedule's fallback zone",
            ),
            Column::text_or_null(
                "locale",
                "a BCP 47 tag such as fr-CA; NULL: the default language",
            ),
            Column::boolean("active", "false: the account gets no email"),
        ],
    },
    Relation {
        name: "herald_tasks",
        about: "one row per task",
        columns: &[
            Column::text("id", "the task's id in the app, as text (unique)"),
            Column::text("user_id", "the owner: an id of herald_users"),
            Column::text("title", "what the email calls the task"),
            Column::time("due_at", "when it is due (UTC); NULL: no due time"),
            Column::time(
                "completed_at",
                "when it was completed (UTC); NULL: still open",
            ),
            Column::text_or_null("link_path", "the task's path in the app, such as /tasks/42"),
        ],
    },
    Relation {
        name: "herald_focus_sessions",
        about: "one row per focus session",
        columns: &[
            Column::text("id", "the session's id in the app, as text"),
            Column::text("user_id", "the owner: an id of herald_users"),
            Column::time("started_at", "when it started (UTC)"),
            Column::integer("minutes", "how long it lasted"),
        ],
    },
];

/// A relation of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Relation {
    pub name: &'static str,
    pub about: &'static str,
    pub columns: &'static [Column],
}

/// A column of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    pub about: &'static str,
}

/// The types the contract knows, as each database names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Boolean,
    Time,
    Integer,
}

impl Column {
    const fn new(
        name: &'static str,
        ty: ColumnType,
        nullable: bool,
        about: &'static str,
    ) -> Column {
        Column {
            name,
            ty,
            nullable,
            about,
        }
    }
    const fn text(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Text, false, about)
    }
    const fn text_or_null(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Text, true, about)
    }
    const fn boolean(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Boolean, false, about)
    }
    const fn time(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Time, true, about)
    }
    const fn integer(name: &'static str, about: &'static str) -> Column {
        Column::new(name, ColumnType::Integer, false, about)
    }
}

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
}

/// The app's database, read-only.
#[derive(Debug, Clone)]
pub struct Source {
    pub db: Db,
}

const USER_COLUMNS: &str = "id, email, display_name, time_zone, locale";
const TASK_COLUMNS: &str = "id, user_id, title, due_at, completed_at, link_path";

/// Runs the same query-building code for either database: `$qb` is a `QueryBuilder` of the
/// source's kind and `$pool` its pool.
macro_rules! on_source {
    ($source:expr, |$pool:ident, $qb:ident| $body:block) => {
        match &$source.db {
            Db::Postgres($pool) => {
                let mut $qb = QueryBuilder::<Postgres>::new("");
                $body
            }
            Db::MySql($pool) => {
                let mut $qb = QueryBuilder::<MySql>::new("");
                $body
            }
        }
    };
}

/// "is one of these": PostgreSQL takes the list as one array parameter (`= ANY($1)`: one value
/// to encode and one plan, whatever the length), MariaDB/MySQL as `IN (?, ?, …)`.
trait PushIn {
    fn push_in(&mut self, values: &[String]);
}

impl PushIn for QueryBuilder<Postgres> {
    fn push_in(&mut self, values: &[String]) {
        self.push(" = ANY(").push_bind(values.to_vec()).push(")");
    }
}

impl PushIn for QueryBuilder<MySql> {
    fn push_in(&mut self, values: &[String]) {
        self.push(" IN (");
        let mut list = self.separated(", ");
        for v in values {
            list.push_bind(v.clone());
        }
        self.push(")");
    }
}

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
            _ => anyhow::bail!(
                "source.url {} is neither PostgreSQL (postgres://…) nor MariaDB/MySQL (mysql://…); point it at the database that holds the herald_users, herald_tasks and herald_focus_sessions views",
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
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE completed_at IS NULL AND due_at >= "
            ));
            qb.push_bind(from).push(" AND due_at < ").push_bind(to);
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
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE completed_at IS NULL AND due_at > "
            ));
            qb.push_bind(page.from)
                .push(" AND due_at <= ")
                .push_bind(page.to);
            if let Some((due, id)) = &page.after {
                qb.push(" AND (due_at, id) > (")
                    .push_bind(*due)
                    .push(", ")
                    .push_bind(id.clone())
                    .push(")");
            }
            if let Some(owner) = page.owner {
                qb.push(" AND user_id = ").push_bind(owner.to_owned());
            }
            qb.push(" ORDER BY due_at, id LIMIT ")
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
                "SELECT {TASK_COLUMNS} FROM herald_tasks WHERE ((completed_at IS NULL AND due_at < "
            ));
            qb.push_bind(due_before)
                .push(") OR (completed_at >= ")
                .push_bind(from)
                .push(" AND completed_at < ")
                .push_bind(to)
                .push(")) AND user_id");
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
        let minutes = if self.is_mysql() {
            "CAST(minutes AS SIGNED)"
        } else {
            "minutes::bigint"
        };
        on_source!(self, |pool, qb| {
            qb.push(format!("SELECT user_id, started_at, {minutes} AS minutes FROM herald_focus_sessions WHERE started_at >= "));
            qb.push_bind(from).push(" AND started_at < ").push_bind(to);
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
