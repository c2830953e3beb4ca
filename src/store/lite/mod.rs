//! Herald's state in one SQLite file: the embedded mode's half of [`super::Store`].
//!
//! Each `impl Store` file of the parent module runs its PostgreSQL statement, or hands over to the
//! function of the same name here when the store is embedded. The SQL differs where the two
//! databases do: SQLite has no arrays (a list travels as one JSON parameter, read with
//! `json_each`), no `FOR UPDATE SKIP LOCKED` (one process, one writer: nothing to skip), no
//! clock in the statements (every instant, "now" included, is bound from Rust) and no
//! `UPDATE … FROM … RETURNING` of joined columns (a transaction reads, then writes).
//!
//! # One file, one writer
//!
//! The file is in WAL mode: readers never wait for the writer, nor it for them. Every write goes
//! through one connection ([`Lite::writer`]), so writes queue in the process instead of meeting
//! `SQLITE_BUSY` in the file, and a transaction that reads before it writes cannot be refused its
//! upgrade. The workers' outcomes, the hottest writes, already arrive grouped (the recorder
//! commits every worker's outcomes of a moment together), so the one writer commits them in one
//! transaction. `synchronous = NORMAL`: a commit survives the process being killed, and a power
//! cut loses at most the last commits, never the file.

mod deliveries;
mod gauges;
pub mod lock;
pub mod moved;
mod pauses;
mod preferences;
mod retention;
mod schedules;
mod sessions;
mod suppressions;
mod ui;
mod ui_browse;

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use lock::StateLock;
pub use schedules::ScheduleGuard;

/// Herald's SQLite migrations (`migrations/sqlite/`), recorded in a table of their own: the
/// queue's crate (apalis-sqlite) keeps its migrations in the same file under sqlx's default name.
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/sqlite");
    m.dangerous_set_table_name("herald_migrations");
    m
}

/// Connections that only read: the API, the dashboard and the planner's look-ups read while the
/// writer writes. Two, not more: each SQLite connection is a thread of its own, with its page
/// cache and its allocators' per-thread memory. With four readers and six source connections
/// (`store::EMBEDDED_SOURCE_CONNECTIONS`), all with SQLite's 2 MB caches, the embedded bench
/// peaked at 51-56 MB RSS; with two and two and 256 KiB caches, at 44-46 MB, and sent as many
/// emails a second (BENCHMARKS.md, "One file: memory").
const READERS: u32 = 2;

/// The readers' page cache, in KiB (SQLite's default is 2,000): the file's pages are in the
/// operating system's cache anyway, and the readers' queries (by id, by index, the dashboard's
/// counts) keep few of them hot. Each reader's cache filled to its 2 MB during a fire.
const READER_CACHE_KIB: u32 = 256;

/// The writer's page cache, in KiB (SQLite's default is 2,000). Its statements insert and update
/// rows by key, through a few indexes; what they touch beyond this is in the operating system's
/// cache. With SQLite's 2 MB the embedded bench peaked about 1 MB higher, for the same emails a
/// second (BENCHMARKS.md, "One file under 40 MB").
const WRITER_CACHE_KIB: u32 = 512;

/// How long a statement waits for the file's lock (held by a checkpoint, or by a reader of the
/// same file from outside Herald, `sqlite3` say) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The state file, opened: its lock, one writer, some readers.
#[derive(Debug, Clone)]
pub struct Lite {
    /// Every write, one at a time.
    pub writer: SqlitePool,
    /// Reads that need not see a write in flight.
    pub reader: SqlitePool,
    /// Each schedule's planning lock ([`schedules`]).
    schedule_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    _lock: Arc<StateLock>,
}

impl Lite {
    /// Opens (creating it if needed) the state file at `path`, takes its lock (one process per
    /// file) and applies the migrations.
    pub async fn open(path: &Path) -> anyhow::Result<Lite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create {}, the folder of the state file",
                    dir.display()
                )
            })?;
        }
        let lock = StateLock::take(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
            )
            .await
            .with_context(|| format!("cannot open the state file {}", path.display()))?;
        migrator()
            .run(&writer)
            .await
            .with_context(|| format!("cannot apply the migrations to {}", path.display()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_lazy_with(
                options
                    .read_only(true)
                    .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
            );
        Ok(Lite {
            writer,
            reader,
            schedule_locks: Arc::default(),
            _lock: Arc::new(lock),
        })
    }
}

impl Lite {
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

/// A list as one parameter: SQLite reads it with `json_each(?)`, where PostgreSQL takes an array.
pub fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("a list of ids or strings is JSON")
}
