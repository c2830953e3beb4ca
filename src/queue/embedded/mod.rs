//! The embedded queue: apalis-sqlite's `Jobs` and `Workers` tables in the state file, beside
//! Herald's own tables, for the mode without PostgreSQL and Redis. The same jobs (the JSON list of
//! delivery ids of [`DeliveryJob`]) go through it, and its workers ([`run_workers`]) run the same
//! handler path ([`crate::worker::process_job_as`]) as the Redis half's.
//!
//! # One writer
//!
//! The queue does not open the file again: it writes through the state store's one writer
//! ([`Lite::writer`], a pool of one connection) and reads its depth through the store's readers.
//! A second writing connection would meet the store's writer in the file: SQLite lets one
//! connection write at a time, and a transaction that read before it writes (as the store's
//! claims and records do) is refused its upgrade with `SQLITE_BUSY` at once, busy timeout or not,
//! when another connection committed since its read. With one connection, every write of the
//! process (pushes, fetches, heartbeats, acks, the recorder's groups) waits its turn in the
//! process instead, and none of them can meet `SQLITE_BUSY` from Herald itself. What it costs:
//! a fetch or an ack waits behind a group of outcomes being committed, a few milliseconds.
//!
//! Measured (`tests/queue.rs`, a thousand emails to the outbox in jobs of 10, debug build, two
//! cores): through the store's writer, 2.4–3.2 s; with a pool of the queue's own on the same
//! file (as `connect_with_callback` makes), 11.4 s with one connection and 6.4–15.9 s with four.
//! No job failed either way (the 10 s busy timeout absorbed every wait), but the two writers
//! spent their time in SQLite's busy handler, sleeping on each other's locks.
//!
//! The crate's migrations run on that connection too (`SqliteStorage::migrations`, recorded in
//! sqlx's `_sqlx_migrations`, while Herald's are in `herald_migrations`), but not its `setup`,
//! which would set `synchronous = OFF` and other pragmas on the store's writer: the file keeps
//! the store's `synchronous = NORMAL`.
//!
//! # Nothing to refill
//!
//! The Redis half keeps a marker key to tell that Redis came back empty while PostgreSQL did not.
//! Here the queue and the state are in one file, committed by one connection: they cannot part,
//! so the dispatcher has no marker to read for this queue.
//!
//! # A restart
//!
//! One process per file (the state file's lock, [`crate::store::lite::StateLock`]), so every
//! worker in the table that is not this process's was left by a process that is gone. Before its
//! workers start, a process gives back their claims in the state store at once (not when their
//! leases run out) and puts their jobs back to `Pending` ([`Embedded::give_back_orphans`]): the
//! jobs come back to this process's workers. The claim in the state store stays what keeps a
//! delivery to one send: a job seen twice finds its deliveries recorded, or claimed by a
//! living lease, and does nothing for them.

mod workers;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_sqlite::{SqlitePool, SqliteStorage, SqliteTask};
use tokio::sync::Notify;

use super::{DeliveryJob, workers::DEAD_LETTER_KEEP};
use crate::{config::QueueSettings, store::Store, store::lite::Lite};

pub use workers::{janitor, run_workers};

/// The apalis-sqlite configuration for Herald's queue, as [`super::apalis_config`] is for Redis.
pub fn apalis_config(q: &QueueSettings) -> apalis_sqlite::Config {
    let heartbeat = q.heartbeat.max(Duration::from_millis(100));
    let missed = super::CRATE_ORPHAN_AFTER
        .as_millis()
        .div_ceil(heartbeat.as_millis()) as usize;
    apalis_sqlite::Config::default()
        .queue(&q.name)
        .batch_size(q.batch_size)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(missed.max(2))
        // With results persisted, every finished job would stay in `Jobs` as `Done`; without,
        // nothing acks: the handler deletes each job itself ([`Embedded::ack`]).
        .persist_results(false)
        // The claim in the state store is the lease that matters.
        .lock_tasks(false)
}

/// The embedded half of [`super::Queue`].
#[derive(Clone)]
pub struct Embedded {
    writer: SqlitePool,
    reader: SqlitePool,
    config: apalis_sqlite::Config,
    /// `<queue>:dead-letter`: the `job_type` undecodable jobs are moved to.
    dead_letter: String,
    /// Wakes this process's idle worker right after a push. One process per file: every push is
    /// local, so no other wake-up is needed for pushes (the heartbeat still picks up a job put
    /// back for later).
    pushed: Arc<Notify>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedded({})", self.config.queue)
    }
}

impl Embedded {
    /// The queue in `lite`'s file: applies apalis-sqlite's migrations through the store's writer.
    pub async fn open(lite: &Lite, settings: &QueueSettings) -> anyhow::Result<Embedded> {
        SqliteStorage::<()>::migrations()
            .run(&lite.writer)
            .await
            .context("cannot apply apalis-sqlite's migrations to the state file")?;
        let config = apalis_config(settings);
        Ok(Embedded {
            writer: lite.writer.clone(),
            reader: lite.reader.clone(),
            dead_letter: format!("{}:dead-letter", settings.name),
            config,
            pushed: Arc::new(Notify::new()),
        })
    }

    pub fn name(&self) -> &str {
        self.config.queue.as_ref()
    }

    pub fn config(&self) -> &apalis_sqlite::Config {
        &self.config
    }

    /// The `job_type` of the dead letters.
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letter
    }

    /// The apalis-sqlite storage the workers fetch from, on the store's writer.
    fn storage(&self) -> SqliteStorage<Vec<u8>> {
        SqliteStorage::new(&self.writer).with_config(self.config.clone())
    }

    /// A stream that yields after each push: the workers' wake-up.
    fn pushes(&self) -> futures::stream::BoxStream<'static, ()> {
        let pushed = self.pushed.clone();
        Box::pin(futures::stream::unfold(pushed, |pushed| async move {
            pushed.notified().await;
            Some(((), pushed))
        }))
    }

    /// Pushes `ids` as jobs of `job_size` ids, in one transaction.
    pub async fn push(&self, ids: &[i64], job_size: usize) -> anyhow::Result<()> {
        let tasks = ids
            .chunks(job_size.max(1))
            .map(|chunk| {
                let job = DeliveryJob {
                    delivery_ids: chunk.to_vec(),
                };
                let bytes = serde_json::to_vec(&job).expect("a list of ids is JSON");
                TaskBuilder::new(bytes).build()
            })
            .collect::<Vec<SqliteTask>>();
        self.push_tasks(&tasks)
            .await
            .context("cannot push to the embedded queue")?;
        Ok(())
    }

    /// Pushes one job of exactly these bytes.
    pub async fn push_bytes(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.push_tasks(&[TaskBuilder::new(bytes.to_vec()).build()])
            .await
            .context("cannot push to the embedded queue")
    }

    async fn push_tasks(&self, tasks: &[SqliteTask]) -> Result<(), apalis_sqlite::Error> {
        let mut tx = self.writer.begin().await?;
        apalis_sqlite::queries::push_tasks(&mut *tx, self.name(), tasks).await?;
        tx.commit().await?;
        self.pushed.notify_one();
        Ok(())
    }

    /// Jobs waiting to be fetched (now or later).
    pub async fn depth(&self) -> sqlx::Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status = 'Pending'",
        )
        .bind(self.name())
        .fetch_one(&self.reader)
        .await?;
        Ok(n as usize)
    }

    /// Every job of this queue still in the table (the dead letters aside).
    pub async fn stored_jobs(&self) -> sqlx::Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = ?")
            .bind(self.name())
            .fetch_one(&self.reader)
            .await?;
        Ok(n as usize)
    }

    /// The bytes of the dead letters, newest first.
    pub async fn dead_letters(&self) -> sqlx::Result<Vec<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT job FROM Jobs WHERE job_type = ? ORDER BY done_at DESC, ROWID DESC",
        )
        .bind(&self.dead_letter)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Workers whose heartbeat is within the last `within` (the table keeps whole seconds).
    pub async fn live_workers(&self, within: Duration) -> sqlx::Result<usize> {
        let since = chrono::Utc::now().timestamp() - within.as_secs() as i64;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM Workers WHERE worker_type = ? AND last_seen >= ?",
        )
        .bind(self.name())
        .bind(since)
        .fetch_one(&self.reader)
        .await?;
        Ok(n as usize)
    }

    /// What the queue holds, each set of rows with its count, the empty ones left out:
    /// `<q>:jobs` (by status), `<q>:dead-letter`, `<q>:workers`.
    pub async fn keys(&self) -> sqlx::Result<Vec<(String, usize)>> {
        let q = self.name();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT ? || ':jobs:' || status, COUNT(*) FROM Jobs WHERE job_type = ? GROUP BY status
             UNION ALL SELECT ?, COUNT(*) FROM Jobs WHERE job_type = ?
             UNION ALL SELECT ? || ':workers', COUNT(*) FROM Workers WHERE worker_type = ?",
        )
        .bind(q)
        .bind(q)
        .bind(&self.dead_letter)
        .bind(&self.dead_letter)
        .bind(q)
        .bind(q)
        .fetch_all(&self.reader)
        .await?;
        let mut sized: Vec<(String, usize)> = rows
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k, n as usize))
            .collect();
        sized.sort();
        Ok(sized)
    }

    /// Deletes this queue's jobs, dead letters and workers (for tests and benchmarks).
    pub async fn delete_all(&self) -> sqlx::Result<usize> {
        let mut tx = self.writer.begin().await?;
        let jobs = sqlx::query("DELETE FROM Jobs WHERE job_type IN (?, ?)")
            .bind(self.name())
            .bind(&self.dead_letter)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let workers = sqlx::query("DELETE FROM Workers WHERE worker_type = ?")
            .bind(self.name())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((jobs + workers) as usize)
    }

    /// Removes a finished job; or, when `done` is false (the state store could not be read or
    /// written), puts it back to be fetched again `retry` from now.
    pub(crate) async fn ack(&self, task_id: &str, done: bool, retry: Duration) -> sqlx::Result<()> {
        if done {
            sqlx::query("DELETE FROM Jobs WHERE id = ?")
                .bind(task_id)
                .execute(&self.writer)
                .await?;
        } else {
            let at = chrono::Utc::now().timestamp() + retry.as_secs() as i64;
            sqlx::query(
                "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, run_at = ?
                 WHERE id = ?",
            )
            .bind(at)
            .bind(task_id)
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    /// Moves an undecodable job to the dead letters (its row, bytes and all, under
    /// `<q>:dead-letter`, which no worker fetches), keeping the newest [`DEAD_LETTER_KEEP`].
    pub(crate) async fn dead_letter(&self, task_id: &str) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE Jobs SET job_type = ?, status = 'Killed', lock_by = NULL, lock_at = NULL,
                 done_at = ? WHERE id = ?",
        )
        .bind(&self.dead_letter)
        .bind(chrono::Utc::now().timestamp())
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ?1 AND ROWID NOT IN (
                 SELECT ROWID FROM Jobs WHERE job_type = ?1
                 ORDER BY done_at DESC, ROWID DESC LIMIT ?2)",
        )
        .bind(&self.dead_letter)
        .bind(DEAD_LETTER_KEEP as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Gives back what `dead` workers held: their claims in the state store at once, then their
    /// jobs (back to `Pending`, for this process's workers to fetch), then their rows. Returns
    /// how many jobs came back.
    pub async fn give_back(&self, store: &Store, dead: &[String]) -> anyhow::Result<u64> {
        if dead.is_empty() {
            return Ok(0);
        }
        // Claims first: should the rest fail, the jobs are still held, and the next round
        // starts again from them.
        let released = store
            .release_claims_of(dead)
            .await
            .context("cannot give back the claims of workers that are gone")?;
        if released > 0 {
            tracing::warn!(
                workers = ?dead,
                deliveries = released,
                "gave back the claims of workers that are gone (sent again unless already recorded)"
            );
        }
        let list = crate::store::lite::json_list(dead);
        let mut tx = self.writer.begin().await?;
        // In a worker's hands: fetched (`Queued`), or locked (`Running`, unused: `lock_tasks`
        // is off).
        let jobs = sqlx::query(
            "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL
             WHERE status IN ('Queued', 'Running')
               AND lock_by IN (SELECT value FROM json_each(?))",
        )
        .bind(&list)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Whatever else still names them (nothing, unless another program used the table), so
        // that their rows can go (`Jobs.lock_by` refers to `Workers`).
        sqlx::query(
            "UPDATE Jobs SET lock_by = NULL WHERE lock_by IN (SELECT value FROM json_each(?))",
        )
        .bind(&list)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM Workers WHERE id IN (SELECT value FROM json_each(?))")
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if jobs > 0 {
            tracing::warn!(
                jobs,
                workers = dead.len(),
                "put back the jobs of workers that are gone"
            );
        }
        Ok(jobs)
    }

    /// The workers of this queue in the table that are not this process's: left by a process
    /// that is gone, since one process holds the file at a time. Their jobs come back at once
    /// ([`Self::give_back`]). Returns how many jobs came back.
    pub async fn give_back_orphans(&self, store: &Store) -> anyhow::Result<u64> {
        let mine = this_process();
        let workers: Vec<String> =
            sqlx::query_scalar("SELECT id FROM Workers WHERE worker_type = ?")
                .bind(self.name())
                .fetch_all(&self.writer)
                .await?;
        let dead: Vec<String> = workers.into_iter().filter(|w| !w.contains(&mine)).collect();
        self.give_back(store, &dead).await
    }

    /// The workers of this queue whose heartbeat is older than `silent_for`: this process's
    /// workers that apalis stopped and replaced (a new name each time).
    pub async fn silent_workers(&self, silent_for: Duration) -> sqlx::Result<Vec<String>> {
        let before = chrono::Utc::now().timestamp() - silent_for.as_secs() as i64;
        sqlx::query_scalar("SELECT id FROM Workers WHERE worker_type = ? AND last_seen < ?")
            .bind(self.name())
            .bind(before)
            .fetch_all(&self.writer)
            .await
    }

    /// Deletes jobs of this queue in a finished state (`Done`, `Killed`, `Failed`), which only
    /// the crate's own acks write (Herald's handler deletes each job instead). Returns how many.
    pub async fn sweep_finished(&self) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ? AND status IN ('Done', 'Killed', 'Failed')",
        )
        .bind(self.name())
        .execute(&self.writer)
        .await?
        .rows_affected())
    }
}

/// What the names of this process's workers contain ([`super::workers::worker_name`]:
/// `herald-<host>-<pid>-<process id>.<run>-<restarts>`).
fn this_process() -> String {
    format!("-{}-{}.", std::process::id(), super::workers::process_id())
}
