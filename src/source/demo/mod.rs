//! The demo app that `herald seed` fills and the tests use: tables of its own, and the
//! contract's views over them, exactly as a real app's team writes them, so that the demo and a
//! real app take the same path through Herald. It lives in PostgreSQL (the schema `herald_demo`
//! of Herald's database or the source's, `demo/postgres.rs`) or in a SQLite file (the embedded mode's
//! `herald.db`, tables prefixed `herald_demo_`, `demo/sqlite.rs`); each operation below has the same
//! meaning on both.
//!
//! Ids are text from a sequence (`"1"`, `"2"`, …); users and tasks are soft-deleted with
//! `deleted_at`, which the views leave out.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool, postgres::PgPoolOptions};

use crate::config::redact;

/// A demo user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub timezone: String,
    pub locale: Option<String>,
}

impl NewUser {
    pub fn new(email: &str, display_name: &str, timezone: &str) -> NewUser {
        NewUser {
            email: email.into(),
            display_name: display_name.into(),
            timezone: timezone.into(),
            locale: None,
        }
    }
}

/// A demo task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub owner_id: String,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What [`Demo::delete_users_matching`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedUsers {
    pub ids: Vec<String>,
    pub tasks: u64,
    pub focus_sessions: u64,
}

/// Creates the demo's tables and views in PostgreSQL inside the caller's transaction
/// (`herald migrate-state` copies a file's demo into them with the rest of the state).
pub async fn install_postgres(tx: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    postgres::install_in(tx).await
}

/// A writable connection to the database that holds the demo app.
#[derive(Debug, Clone)]
pub struct Demo {
    db: Db,
}

/// The demo's database, of either kind.
#[derive(Debug, Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Demo {
    /// Connects to the demo's database: PostgreSQL (`postgres://…`) or a SQLite file
    /// (`sqlite://path`, created with its folder if missing).
    pub async fn connect(url: &str) -> anyhow::Result<Demo> {
        if url.starts_with("sqlite:") {
            return Ok(Demo {
                db: Db::Sqlite(sqlite::connect(url).await?),
            });
        }
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "the demo app lives in PostgreSQL or a SQLite file; {} is neither a PostgreSQL URL nor a SQLite one (a MariaDB app writes its own views: see examples/laravel-mariadb)",
            redact(url)
        );
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the demo's database at {}", redact(url)))?;
        Ok(Demo {
            db: Db::Postgres(pool),
        })
    }

    /// The demo in a SQLite file already open on `pool`: the embedded state file's one writer,
    /// so that writing the demo's rows while Herald runs on that file adds no second writer
    /// (which would refuse Herald's read-then-write transactions with `SQLITE_BUSY`). Its
    /// connections have no `REGEXP`: not for [`Demo::max_seeded_index`] nor
    /// [`Demo::delete_users_matching`].
    pub fn on_sqlite(pool: SqlitePool) -> Demo {
        Demo {
            db: Db::Sqlite(pool),
        }
    }

    /// Closes the demo's connections (a SQLite file is checkpointed: its `-wal` emptied).
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// Where the demo's users are, for messages: `herald_demo.users` or `herald_demo_users`.
    pub fn users_table(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => "herald_demo.users",
            Db::Sqlite(_) => "herald_demo_users",
        }
    }

    /// Whether the database has the contract's views already (the demo's or an app's).
    pub async fn has_views(&self) -> sqlx::Result<bool> {
        match &self.db {
            Db::Postgres(pool) => postgres::has_views(pool).await,
            Db::Sqlite(pool) => sqlite::has_views(pool).await,
        }
    }

    /// Creates the demo's tables and views (nothing that exists already is touched).
    pub async fn install(&self) -> anyhow::Result<()> {
        match &self.db {
            Db::Postgres(pool) => postgres::install(pool).await,
            Db::Sqlite(pool) => sqlite::install(pool).await,
        }
    }

    /// Inserts users and returns their ids, in order.
    pub async fn insert_users(&self, users: &[NewUser]) -> sqlx::Result<Vec<String>> {
        match &self.db {
            Db::Postgres(pool) => postgres::insert_users(pool, users).await,
            Db::Sqlite(pool) => sqlite::insert_users(pool, users).await,
        }
    }

    /// Inserts tasks and returns their ids, in order.
    pub async fn insert_tasks(&self, tasks: &[NewTask]) -> sqlx::Result<Vec<String>> {
        match &self.db {
            Db::Postgres(pool) => postgres::insert_tasks(pool, tasks).await,
            Db::Sqlite(pool) => sqlite::insert_tasks(pool, tasks).await,
        }
    }

    /// Inserts focus sessions: (owner, started at, minutes).
    pub async fn insert_focus_sessions(
        &self,
        sessions: &[(String, DateTime<Utc>, i32)],
    ) -> sqlx::Result<u64> {
        match &self.db {
            Db::Postgres(pool) => postgres::insert_focus_sessions(pool, sessions).await,
            Db::Sqlite(pool) => sqlite::insert_focus_sessions(pool, sessions).await,
        }
    }

    /// Soft-deletes a user, as the app would: the views leave them out from now on.
    pub async fn soft_delete_user(&self, id: &str) -> sqlx::Result<()> {
        match &self.db {
            Db::Postgres(pool) => postgres::soft_delete_user(pool, id).await,
            Db::Sqlite(pool) => sqlite::soft_delete_user(pool, id).await,
        }
    }

    /// The highest N of the seeded addresses `user<N>@example.com`, so that a second seed run
    /// picks new ones.
    pub async fn max_seeded_index(&self) -> sqlx::Result<i64> {
        match &self.db {
            Db::Postgres(pool) => postgres::max_seeded_index(pool).await,
            Db::Sqlite(pool) => sqlite::max_seeded_index(pool).await,
        }
    }

    /// How many users the demo has (soft-deleted ones too).
    pub async fn count_users(&self) -> sqlx::Result<i64> {
        match &self.db {
            Db::Postgres(pool) => postgres::count_users(pool).await,
            Db::Sqlite(pool) => sqlite::count_users(pool).await,
        }
    }

    /// Deletes the users whose email matches the regular expression `pattern`, with their tasks
    /// and focus sessions, in one transaction. The pattern is read by PostgreSQL (`~`) or by the
    /// `regex` crate (SQLite's `REGEXP`): write it in the syntax both share (`^user[0-9]+@…$`).
    pub async fn delete_users_matching(&self, pattern: &str) -> sqlx::Result<RemovedUsers> {
        match &self.db {
            Db::Postgres(pool) => postgres::delete_users_matching(pool, pattern).await,
            Db::Sqlite(pool) => sqlite::delete_users_matching(pool, pattern).await,
        }
    }
}
