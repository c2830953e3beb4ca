//! The queue: [`Queue`], one type over its two backends (apalis-redis beside PostgreSQL, in
//! [`in_redis`] with [`workers`] and [`housekeeping`]; apalis-sqlite in the state file in the
//! embedded mode, in [`embedded`]), the dispatcher that feeds it from the state store, the
//! workers that drain it, and the housekeeping that keeps it at its baseline.
//!
//! # How Herald uses apalis-redis 1.0.0, and why
//!
//! PostgreSQL is the record of every email; Redis only carries delivery ids that are due now.
//! apalis-redis 1.0.0 has gaps that Herald designs around on purpose. Each is handled in one
//! place:
//!
//! | gap in apalis-redis 1.0.0 | what Herald does | where |
//! |---|---|---|
//! | its fetch promotes *every* due id with one Lua `unpack`, which fails above ~8,000 ids and wedges the queue | planned deliveries stay in PostgreSQL; the dispatcher pushes chunks while the queue is below `queue.high_water` (at most 5,000) | [`dispatch`] |
//! | with `persist_results(false)` nothing ever acks: every finished job stays in `{q}:inflight:<worker>`, `{q}:data` and `{q}:meta:<id>` | the handler acks each job itself once its outcome is committed in PostgreSQL | [`workers`] |
//! | a dead worker's inflight set is re-queued with one `RPUSH unpack(…)` (same ~8,000 limit), and a worker's name and metadata are never deleted | Herald drains dead workers' inflight sets in chunks of 500 before starting its own workers and every few seconds after, and deregisters them | [`housekeeping`] |
//! | retries are in-process sleeps; a failed task is re-run up to 25 times by Lua | the handler never fails a job for a send error: the retry lives in PostgreSQL (`due_at`) | [`crate::worker`] |
//! | `lock_tasks` (the default) costs four Redis calls and an O(n) `LREM` per job | off: the claim on the PostgreSQL row is the lease that matters | [`apalis_config`] |
//! | an idle worker looks for jobs only on its heartbeat | each local push wakes the worker; the heartbeat (100 ms) bounds the pickup delay of other processes' pushes and of a wake-up lost between two fetches (with 1 s, it made the p99 latency at 1,000 emails/s 700–950 ms) | [`workers`] |
//! | a worker restarting under the same name within the heartbeat threshold cannot register | each process start and each restart gets a unique name | [`workers::worker_name`] |
//! | a job that cannot be decoded fails the worker's fetch; restarted, it meets the same job | the workers read raw bytes (a pass-through codec) and the handler decodes; an undecodable job goes to `{q}:dead-letter` | [`workers`] |
//! | Redis may come back from a restart empty | a marker key tells; its absence makes the dispatcher push every waiting row again at once | [`dispatch`] |
//!
//! # How Herald uses apalis-sqlite 1.0.0 (the embedded mode), and why
//!
//! Without PostgreSQL and Redis, the jobs are rows of apalis-sqlite's `Jobs` table in the state
//! file, written through the state store's one writer ([`embedded`] says why: no `SQLITE_BUSY`).
//! Its gaps, each handled in one place:
//!
//! | gap in apalis-sqlite 1.0.0 | what Herald does | where |
//! |---|---|---|
//! | `setup` sets `synchronous = OFF` (and cache and journal pragmas) on whichever pooled connection runs it: the store's writer would lose its durability | Herald runs only the crate's migrations (`SqliteStorage::migrations`, in sqlx's `_sqlx_migrations`; Herald's own are in `herald_migrations`); the file keeps `synchronous = NORMAL` | [`embedded::Embedded::open`] |
//! | `connect_with_callback` (the update hook that wakes workers) opens a pool of its own: a second writer in the file, which refuses the store's read-then-write transactions with `SQLITE_BUSY`; and the hook fires at the insert, before its commit | the queue writes through the store's writer; the workers wake on each push of this process (after its commit), which is every push: one process per file | [`embedded`] |
//! | with `persist_results(false)` nothing acks: every finished job stays `Queued` under its worker; with results persisted, it stays `Done` for good (the crate's `vacuum` deletes those, then runs `VACUUM` on the whole state file) | the handler deletes each job once its outcome is committed, or puts it back `Pending` 5 s later when the state could not be written; the janitor deletes any finished row something else left | [`embedded`] |
//! | a job that cannot be decoded fails the worker's fetch | the same raw-bytes codec as the Redis half; an undecodable job's row moves to `job_type = <q>:dead-letter` (`Killed`, the newest 1,000 kept), counted, and the worker goes on | [`embedded`] |
//! | a dead worker's jobs come back only through another worker's heartbeat, after `heartbeat × missed_heartbeats`, each time with one more attempt out of 25; dead workers' rows are never deleted | one process per file: at start every worker that is not this process's is dead, so its claims are given back, its jobs set `Pending` and its row deleted at once; the janitor does the same for this process's stopped workers after [`ORPHAN_AFTER`] (the crate's own rule comes after twice that) | [`embedded`] |
//! | `Jobs.lock_by` refers to `Workers(id)`, and the store's connection enforces foreign keys | a worker's jobs are let go before its row is deleted | [`embedded::Embedded::give_back`] |
//! | instants are whole seconds (`strftime('%s')`) | a job put back for 5 s waits up to a second more; the live workers are counted by the second | |
//! | a heartbeat is a write transaction (keep-alive and re-enqueue) | it stays at `queue.heartbeat` (100 ms): ten small writes a second through the writer, which bound the pickup of a job put back for later | [`embedded::apalis_config`] |
//! | a worker name seen within a heartbeat cannot register | the unique names of the Redis half | [`workers::worker_name`] |
//!
//! Redis's "came back empty" has no counterpart: the queue is in the same file as the state,
//! committed by the same connection, so the dispatcher reads no marker for it.
//!
//! # Jobs of many deliveries
//!
//! A job carries the ids of up to [`JOB_SIZE`] deliveries that fell due together (a Resend
//! batch's worth when Resend comes first). Everything that costs a round trip is paid per job:
//! the push, apalis-redis's fetch, the gate's admission script, the claim in PostgreSQL and the
//! ack, so a burst costs Redis well under one command per email (`bench/compare.sh` prints the
//! figure) instead of a dozen. `queue.high_water` counts jobs, as the crate's scripts do.
//! `queue.concurrency` counts emails: a process holds at most that many at once, whatever the
//! size of its jobs (up to [`JOBS_AT_ONCE`] jobs run side by side, each taking its share first).

pub mod dispatch;
pub mod embedded;
pub mod housekeeping;
mod in_redis;
pub mod workers;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis_redis::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::{
    config::QueueSettings, health::Health, shutdown::Shutdown, store::Store, worker::WorkerDeps,
};

pub use dispatch::Dispatcher;
pub use embedded::Embedded;
pub use in_redis::{RedisQueue, delete_queue_keys};

/// How long one Redis call may take before it fails. Short enough that an outage is noticed
/// quickly, and a small fraction of [`ORPHAN_AFTER`], so a slow but living worker is never taken
/// for dead.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker whose heartbeat is older than this is dead: Herald drains its inflight set and
/// deregisters it. Six times the response timeout.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(30);

/// apalis-redis re-queues a dead worker's jobs itself after `heartbeat × missed_heartbeats`.
/// Herald sets that to twice [`ORPHAN_AFTER`], so its own chunked drain always comes first.
const CRATE_ORPHAN_AFTER: Duration = Duration::from_secs(60);

/// The job on the wire: the ids of a few deliveries that fell due together; the rows in
/// PostgreSQL are the truth. One job carries up to [`JOB_SIZE`] ids (the batch size of a
/// provider that takes batches, if larger), so that the push, the fetch, the ack, the gate and
/// the claim cost one round trip per job rather than per email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_ids: Vec<i64>,
}

/// A job as earlier versions of Herald pushed it (one delivery id), still read so that jobs
/// waiting in Redis across an upgrade are not lost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AnyJob {
    Many(DeliveryJob),
    One { delivery_id: i64 },
}

impl AnyJob {
    pub fn ids(self) -> Vec<i64> {
        match self {
            AnyJob::Many(job) => job.delivery_ids,
            AnyJob::One { delivery_id } => vec![delivery_id],
        }
    }
}

/// The most deliveries one job carries when no provider asks for larger batches. Large enough
/// that a burst costs Redis and PostgreSQL a few round trips per hundred emails (with the null
/// provider, four jobs of 100 at once went 10–40 % faster than four jobs of 50); small enough
/// that a process holds few claims at once and a dead worker strands few.
pub const JOB_SIZE: usize = 100;

/// How many jobs one process works on at once. Jobs are as small as what fell due together, one
/// email each in a trickle, so many run side by side; what bounds the emails a process holds is
/// [`crate::worker::WorkerDeps::in_hand`] (`queue.concurrency` emails), which each job takes its
/// share of before it claims anything.
pub const JOBS_AT_ONCE: usize = 64;

/// How many deliveries a job carries with these providers: [`JOB_SIZE`], or the first
/// provider's batch size when it takes larger batches, so that each job is one full batch.
pub fn job_size(providers: &[crate::mail::Provider]) -> usize {
    providers
        .first()
        .map_or(JOB_SIZE, |p| p.batch_size.max(JOB_SIZE))
}

/// Connects to Redis with a response timeout of [`REDIS_RESPONSE_TIMEOUT`] (redis-rs's 500 ms
/// default ends apalis workers during any slow moment) and with `TCP_NODELAY`, which redis-rs
/// leaves off by default: with Nagle's algorithm a command written while an earlier one is
/// unanswered waits for that answer's ACK before it leaves.
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(connection_info(url)?)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_connection_manager_with_config(config)
        .await
        .with_context(|| {
            format!(
                "cannot connect to Redis at {}; is it running?",
                crate::config::redact(url)
            )
        })
}

/// `url` as redis-rs's connection settings, with `TCP_NODELAY` on.
fn connection_info(url: &str) -> anyhow::Result<redis::ConnectionInfo> {
    let info = redis::IntoConnectionInfo::into_connection_info(url).with_context(|| {
        format!(
            "REDIS_URL {} is not a Redis URL",
            crate::config::redact(url)
        )
    })?;
    Ok(info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
}

/// The apalis-redis configuration for Herald's queue.
pub fn apalis_config(q: &QueueSettings) -> apalis_redis::Config {
    let heartbeat = q.heartbeat.max(Duration::from_millis(100));
    let missed = CRATE_ORPHAN_AFTER
        .as_millis()
        .div_ceil(heartbeat.as_millis()) as usize;
    apalis_redis::Config::default()
        .queue(&q.name)
        .batch_size(q.batch_size)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(missed.max(2))
        // Nobody reads the per-task results: the outcome is recorded in PostgreSQL, and the
        // handler acks in Redis itself (see `workers`).
        .persist_results(false)
        // The crate's task locks cost four calls and a scan of the active list per job; the
        // PostgreSQL claim (with its lease and fencing token) is what keeps a delivery to one
        // worker.
        .lock_tasks(false)
        .emit_events(false)
}

/// The queue, whichever backend carries it: apalis-redis beside PostgreSQL, or apalis-sqlite in
/// the state file in the embedded mode.
///
/// One type with a private `enum` of backends, as [`crate::gate::Gate`] is, rather than callers
/// generic over a backend: the backend is chosen at start from the configuration, a choice made
/// at run time, and a type parameter would spread through `AppState`, the router, the UI and the
/// supervisor's closures for no gain. The dispatcher, the workers' entry point
/// ([`run_workers`]), the janitor, the metrics and the API call these methods; what only one
/// backend has stays in its half ([`RedisQueue`], [`Embedded`]).
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    /// Boxed: apalis-redis's storage is several times the size of the embedded half.
    Redis(Box<RedisQueue>),
    Sqlite(Embedded),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.name())
    }
}

impl Queue {
    /// The queue in Redis.
    pub fn new(conn: ConnectionManager, settings: &QueueSettings) -> Queue {
        Queue {
            backend: Backend::Redis(Box::new(RedisQueue::new(conn, settings))),
        }
    }

    /// The queue in the embedded store's file (apalis-sqlite's tables, created if needed).
    pub async fn embedded(store: &Store, settings: &QueueSettings) -> anyhow::Result<Queue> {
        let lite = store
            .lite()
            .context("the embedded queue needs the state in SQLite (Store::open_embedded)")?;
        Ok(Queue {
            backend: Backend::Sqlite(Embedded::open(lite, settings).await?),
        })
    }

    pub fn name(&self) -> &str {
        match &self.backend {
            Backend::Redis(r) => r.name(),
            Backend::Sqlite(e) => e.name(),
        }
    }

    /// The Redis half, when the queue is in Redis.
    pub fn redis(&self) -> Option<&RedisQueue> {
        match &self.backend {
            Backend::Redis(r) => Some(r.as_ref()),
            Backend::Sqlite(_) => None,
        }
    }

    /// The embedded half, when the queue is in the state file.
    pub fn embedded_half(&self) -> Option<&Embedded> {
        match &self.backend {
            Backend::Redis(_) => None,
            Backend::Sqlite(e) => Some(e),
        }
    }

    /// Jobs waiting: scheduled plus active in Redis, pending in the embedded table.
    pub async fn depth(&self) -> anyhow::Result<usize> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.depth().await?),
            Backend::Sqlite(e) => Ok(e.depth().await?),
        }
    }

    /// Pushes `ids`, in order, as jobs of `job_size` ids (the last one may be smaller), in one
    /// round trip (one transaction in the embedded queue), and wakes this process's workers.
    pub async fn push(&self, ids: &[i64], job_size: usize) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Redis(r) => r.push(ids, job_size).await,
            Backend::Sqlite(e) => e.push(ids, job_size).await,
        }
    }

    /// Pushes one job of exactly these bytes, as another program or a damaged store may leave
    /// one: what tests push to see the dead-letter path.
    pub async fn push_bytes(&self, bytes: &[u8]) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.push_bytes(bytes).await?),
            Backend::Sqlite(e) => Ok(e.push_bytes(bytes).await?),
        }
    }

    /// The bytes of the jobs that could not be decoded (the newest first).
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.dead_letters().await?),
            Backend::Sqlite(e) => Ok(e.dead_letters().await?),
        }
    }

    /// Jobs the backend still stores, waiting or in hand (not the dead letters): 0 is the
    /// baseline once every job is done.
    pub async fn stored_jobs(&self) -> anyhow::Result<usize> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.stored_jobs().await?),
            Backend::Sqlite(e) => Ok(e.stored_jobs().await?),
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.ping().await?),
            Backend::Sqlite(e) => Ok(e.ping().await?),
        }
    }

    /// Workers that sent a heartbeat within the last `within`.
    pub async fn live_workers(&self, within: Duration) -> anyhow::Result<usize> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.live_workers(within).await?),
            Backend::Sqlite(e) => Ok(e.live_workers(within).await?),
        }
    }

    /// What the queue holds, as `(name, size)` pairs: each Redis key with its size, or each of
    /// the embedded queue's row sets with its count. What tests compare with the baseline.
    pub async fn keys(&self) -> anyhow::Result<Vec<(String, usize)>> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.keys().await?),
            Backend::Sqlite(e) => Ok(e.keys().await?),
        }
    }

    /// Deletes everything of this queue (for tests and benchmarks). Returns how many keys or
    /// rows went.
    pub async fn delete_all_keys(&self) -> anyhow::Result<usize> {
        match &self.backend {
            Backend::Redis(r) => Ok(r.delete_all_keys().await?),
            Backend::Sqlite(e) => Ok(e.delete_all().await?),
        }
    }
}

/// Runs the delivery workers until `shutdown`, on whichever backend carries the queue: see
/// [`workers::run_workers`] and [`embedded::run_workers`].
pub async fn run_workers(
    queue: Queue,
    store: Store,
    deps: Arc<WorkerDeps>,
    q: QueueSettings,
    grace: Duration,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    match queue.backend {
        Backend::Redis(r) => {
            workers::run_workers(*r, store, deps, q, grace, health, shutdown).await
        }
        Backend::Sqlite(e) => {
            embedded::run_workers(e, store, deps, q, grace, health, shutdown).await
        }
    }
}

/// Cleans up after the workers every few seconds until `shutdown`: see
/// [`housekeeping::janitor`] and [`embedded::janitor`].
pub async fn janitor(queue: Queue, store: Store, health: Health, shutdown: Shutdown) {
    match queue.backend {
        Backend::Redis(r) => housekeeping::janitor(*r, store, health, shutdown).await,
        Backend::Sqlite(e) => embedded::janitor(e, store, health, shutdown).await,
    }
}

/// The queue as a scrape of the metrics reads it.
impl crate::metrics::QueueReading for Queue {
    async fn depth(&self) -> anyhow::Result<usize> {
        Queue::depth(self).await
    }

    async fn live_workers(&self, within: Duration) -> anyhow::Result<usize> {
        Queue::live_workers(self, within).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_connections_turn_nagles_algorithm_off() {
        let info = connection_info("redis://127.0.0.1:6379/3").unwrap();
        assert!(info.tcp_settings().nodelay());
    }

    #[test]
    fn a_url_that_is_not_redis_is_named_without_its_password() {
        let e = connection_info("http://user:secret@host/").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("is not a Redis URL"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
