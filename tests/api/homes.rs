//! The two homes a test boots Herald in, and how one test runs in both: PostgreSQL and Redis (a
//! database and a queue name of its own: [`Env::new`]) or the embedded home (a state file of its
//! own in a folder of its own, removed at the end: [`Env::embedded`]).
//!
//! A test that checks a promise both homes keep is written once, as `async fn name(home: Home)`
//! taking its [`Env`] from `home.env(&smtp)`, and listed in its file's [`in_both_homes!`]. It
//! then runs as `<file>::on_servers::name`, which opens with `skip_without_servers!()`, and as
//! `<file>::embedded::name`, which opens with `embedded_home!()`: it needs no server, and
//! [`Env::new`] refuses to be reached from it (tests/house.rs checks that every test of
//! tests/api opens with one line or the other).
//!
//! [`StateSql`] runs a statement on Herald's state in whichever home the app runs: the one place
//! where the two dialects meet. A statement is written once for both: `$1` parameters (SQLite
//! reads them too), every instant bound from Rust (no `now()`, no intervals), `||` to join text
//! (no arrays).
//!
//! Included beside the harness (`helpers.rs`) by every crate that includes it, which use only
//! part of it.

#![allow(dead_code, unused_macros)]

use std::{cell::Cell, path::Path, time::Duration};

use chrono::{DateTime, Utc};
use herald::store::Store;
use sqlx::{
    Arguments, Decode, FromRow, Postgres, Sqlite, Type,
    postgres::{PgArguments, PgRow},
    sqlite::{SqliteArguments, SqliteRow},
};

use crate::helpers::{Env, SmtpServer, TestApp, spawn_with};

/// Each test named, written once as `async fn name(home: Home)` above the macro, as two tests:
/// `on_servers::name` on PostgreSQL and Redis (skipped loudly without them) and
/// `embedded::name` in a state file of its own.
macro_rules! in_both_homes {
    ($($test:ident),* $(,)?) => {
        /// The tests of this file on PostgreSQL and Redis.
        mod on_servers {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    skip_without_servers!();
                    super::$test($crate::homes::Home::Servers).await;
                }
            )*
        }

        /// The tests of this file in the embedded home: one SQLite file, no server.
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    embedded_home!();
                    super::$test($crate::homes::Home::Embedded).await;
                }
            )*
        }
    };
}

/// Opens a test that runs in the embedded home: it needs no server, and until it ends
/// [`Env::new`] (PostgreSQL and Redis) panics when reached from it.
macro_rules! embedded_home {
    () => {
        let _embedded = $crate::homes::EmbeddedTest::enter();
    };
}

/// Where a test boots Herald.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// PostgreSQL and Redis.
    Servers,
    /// One SQLite file (state and queue), the gate in the process.
    Embedded,
}

impl Home {
    /// A fresh [`Env`] in this home.
    pub fn env(self, smtp: &SmtpServer) -> Env {
        match self {
            Home::Servers => Env::new(smtp),
            Home::Embedded => Env::embedded(smtp),
        }
    }

    /// Herald booted in a fresh [`Env`] of this home.
    pub async fn spawn(self, smtp: &SmtpServer) -> TestApp {
        spawn_with(self.env(smtp)).await
    }
}

impl Env {
    /// Neither `DATABASE_URL` nor `REDIS_URL`: the state, the queue and the demo app's tables in
    /// `herald.db` in a folder of its own, which [`Env::cleanup`] removes.
    pub fn embedded(smtp: &SmtpServer) -> Env {
        let mut env = Env::common(smtp);
        let folder = std::env::temp_dir().join(format!("herald-api-{}", env.database));
        env.set(
            "HERALD__STATE__FILE",
            &folder.join("herald.db").display().to_string(),
        );
        env.folder = Some(folder);
        env
    }
}

thread_local! {
    /// Whether the test on this thread opened with `embedded_home!()`.
    static EMBEDDED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the test on this thread as embedded while it lives. A `#[tokio::test]` polls the
/// test's own future on the test's thread, so everything the test body calls sees the mark.
pub struct EmbeddedTest(());

impl EmbeddedTest {
    pub fn enter() -> EmbeddedTest {
        EMBEDDED.with(|e| e.set(true));
        EmbeddedTest(())
    }
}

impl Drop for EmbeddedTest {
    fn drop(&mut self) {
        EMBEDDED.with(|e| e.set(false));
    }
}

/// Fails an embedded test that reached the servers: its body took an [`Env`] of its own
/// instead of `home.env(&smtp)`, and would test PostgreSQL and Redis twice.
pub fn assert_on_servers(reached: &str) {
    assert!(
        !EMBEDDED.with(Cell::get),
        "{reached} needs PostgreSQL and Redis, but this test runs in the embedded home: take the \
         Env from `home.env(&smtp)` (or `home.spawn(&smtp)`), or list the test as servers-only \
         in tests/api/main.rs"
    );
}

/// Removes an embedded test's folder. A panicking test's app may still be writing in it while
/// the folder goes: tried a few times, then said loudly.
pub fn remove_folder(folder: &Path) {
    for _ in 0..10 {
        match std::fs::remove_dir_all(folder) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    crate::shared_servers::shout(&format!(
        "could not remove {}, an embedded test's folder: remove it by hand",
        folder.display()
    ));
}

/// Closes the store's connections: the pools on PostgreSQL; the state file's writer and
/// readers (checkpointing its WAL) in the embedded home.
pub async fn close(store: &Store) {
    match store.lite() {
        Some(lite) => {
            lite.writer.close().await;
            lite.reader.close().await;
        }
        None => store.pg().close().await,
    }
}

/// A value bound to a [`StateSql`] statement.
#[derive(Clone, Debug)]
pub enum Bind {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Uuid(uuid::Uuid),
}

impl From<i64> for Bind {
    fn from(v: i64) -> Bind {
        Bind::Int(v)
    }
}

impl From<i32> for Bind {
    fn from(v: i32) -> Bind {
        Bind::Int(v.into())
    }
}

impl From<&str> for Bind {
    fn from(v: &str) -> Bind {
        Bind::Text(v.to_owned())
    }
}

impl From<DateTime<Utc>> for Bind {
    fn from(v: DateTime<Utc>) -> Bind {
        Bind::Time(v)
    }
}

impl From<uuid::Uuid> for Bind {
    fn from(v: uuid::Uuid) -> Bind {
        Bind::Uuid(v)
    }
}

/// A column type both databases read.
pub trait Scalar:
    for<'r> Decode<'r, Postgres>
    + Type<Postgres>
    + for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
    + Send
    + Unpin
{
}
impl<T> Scalar for T where
    T: for<'r> Decode<'r, Postgres>
        + Type<Postgres>
        + for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
        + Send
        + Unpin
{
}

/// A row type both databases read.
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}
impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

/// SQL on Herald's state in the store's home, for what the store's functions and the API do not
/// say. Reads go to the state file's readers, writes to its one writer. A statement that fails
/// fails the test, naming the statement.
#[allow(async_fn_in_trait)]
pub trait StateSql {
    async fn sql_scalar<T: Scalar>(&self, sql: &'static str, binds: &[Bind]) -> T;
    async fn sql_rows<T: Row>(&self, sql: &'static str, binds: &[Bind]) -> Vec<T>;
    /// The first column of every row.
    async fn sql_column<T: Scalar>(&self, sql: &'static str, binds: &[Bind]) -> Vec<T>;
    /// Rows changed.
    async fn sql_execute(&self, sql: &'static str, binds: &[Bind]) -> u64;
}

impl StateSql for Store {
    async fn sql_scalar<T: Scalar>(&self, sql: &'static str, binds: &[Bind]) -> T {
        self.sql_column(sql, binds)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    async fn sql_rows<T: Row>(&self, sql: &'static str, binds: &[Bind]) -> Vec<T> {
        match self.lite() {
            Some(lite) => {
                sqlx::query_as_with(sql, lite_args(binds))
                    .fetch_all(&lite.reader)
                    .await
            }
            None => {
                sqlx::query_as_with(sql, pg_args(binds))
                    .fetch_all(self.pg())
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A one-column row: the same reading as [`Self::sql_rows`].
    async fn sql_column<T: Scalar>(&self, sql: &'static str, binds: &[Bind]) -> Vec<T> {
        let rows: Vec<(T,)> = self.sql_rows(sql, binds).await;
        rows.into_iter().map(|(v,)| v).collect()
    }

    async fn sql_execute(&self, sql: &'static str, binds: &[Bind]) -> u64 {
        match self.lite() {
            Some(lite) => sqlx::query_with(sql, lite_args(binds))
                .execute(&lite.writer)
                .await
                .map(|r| r.rows_affected()),
            None => sqlx::query_with(sql, pg_args(binds))
                .execute(self.pg())
                .await
                .map(|r| r.rows_affected()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

fn pg_args(binds: &[Bind]) -> PgArguments {
    let mut args = PgArguments::default();
    for b in binds {
        match b {
            Bind::Int(v) => args.add(*v),
            Bind::Text(v) => args.add(v.clone()),
            Bind::Time(v) => args.add(*v),
            Bind::Uuid(v) => args.add(*v),
        }
        .expect("a value PostgreSQL encodes");
    }
    args
}

fn lite_args(binds: &[Bind]) -> SqliteArguments {
    let mut args = SqliteArguments::default();
    for b in binds {
        match b {
            Bind::Int(v) => args.add(*v),
            Bind::Text(v) => args.add(v.clone()),
            Bind::Time(v) => args.add(*v),
            Bind::Uuid(v) => args.add(*v),
        }
        .expect("a value SQLite encodes");
    }
    args
}

/// `herald ARGS…` run beside the running app, as an operator would: its output on the servers.
/// In the embedded home a second process on the state file is refused, naming this process's
/// pid (one process per file): that is checked, and the answer is `None`.
pub fn herald_beside(app: &TestApp, args: &[&str]) -> Option<std::process::Output> {
    let out = crate::helpers::herald_cmd(&app.env)
        .args(args)
        .output()
        .unwrap();
    if app.env.folder.is_none() {
        return Some(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("pid {}", std::process::id())),
        "herald {args:?} beside an embedded Herald was not refused naming its pid: {stderr}"
    );
    None
}

/// [`herald_beside`] for a command that succeeds: its stdout, on the servers.
pub fn herald_ok_beside(app: &TestApp, args: &[&str]) -> Option<String> {
    let out = herald_beside(app, args)?;
    assert!(
        out.status.success(),
        "herald {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
