//! The apalis-redis queue: its configuration and keys, the dispatcher that feeds it from
//! PostgreSQL, the workers that drain it, and the housekeeping that keeps Redis at its baseline.
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
pub mod housekeeping;
pub mod workers;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_redis::{ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::QueueSettings;

pub use dispatch::Dispatcher;
pub use housekeeping::janitor;
pub use workers::run_workers;

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
/// default ends apalis workers during any slow moment).
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).with_context(|| {
        format!(
            "REDIS_URL {} is not a Redis URL",
            crate::config::redact(url)
        )
    })?;
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

/// A handle to push jobs, read the queue's depth and reach its keys.
#[derive(Clone)]
pub struct Queue {
    storage: RedisStorage<DeliveryJob>,
    conn: ConnectionManager,
    config: apalis_redis::Config,
    /// Wakes this process's idle worker right after a push, instead of at its next heartbeat.
    pushed: Arc<Notify>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.config.queue)
    }
}

impl Queue {
    pub fn new(conn: ConnectionManager, settings: &QueueSettings) -> Queue {
        let config = apalis_config(settings);
        let storage = RedisStorage::new(conn.clone()).with_config(config.clone());
        Queue {
            storage,
            conn,
            config,
            pushed: Arc::new(Notify::new()),
        }
    }

    pub fn name(&self) -> &str {
        self.config.queue.as_ref()
    }

    pub fn storage(&self) -> RedisStorage<DeliveryJob> {
        self.storage.clone()
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn config(&self) -> &apalis_redis::Config {
        &self.config
    }

    /// The key whose absence tells that Redis lost the queue (restarted without persistence, or
    /// flushed): it is set once the queue's contents are known to match PostgreSQL.
    pub(crate) fn marker_key(&self) -> String {
        format!("{}:herald:marker", self.config.queue)
    }

    /// `{q}:inflight:<worker>`.
    pub(crate) fn inflight_key(&self, worker: &str) -> String {
        format!("{}:{worker}", self.config.inflight_jobs_set())
    }

    /// `{q}:dead-letter`: the bytes of jobs that could not be decoded, newest first.
    pub fn dead_letter_key(&self) -> String {
        format!("{}:dead-letter", self.config.queue)
    }

    /// `{q}:meta:<task id>`.
    pub(crate) fn meta_key(&self, task_id: &str) -> String {
        format!("{}:{task_id}", self.config.job_meta_hash())
    }

    /// A stream that yields after each push from this process: the worker's extra wake-up.
    /// Other processes' workers still find the jobs at their next heartbeat (`queue.heartbeat`).
    fn pushes(&self) -> futures::stream::BoxStream<'static, ()> {
        let pushed = self.pushed.clone();
        Box::pin(futures::stream::unfold(pushed, |pushed| async move {
            pushed.notified().await;
            Some(((), pushed))
        }))
    }

    /// Jobs waiting in Redis: scheduled plus active.
    pub async fn depth(&self) -> redis::RedisResult<usize> {
        Ok(self.depth_and_marker().await?.0)
    }

    /// The depth, and whether the marker key is there, in one round trip.
    pub(crate) async fn depth_and_marker(&self) -> redis::RedisResult<(usize, bool)> {
        let mut conn = self.conn.clone();
        let (scheduled, active, marker): (usize, usize, bool) = redis::pipe()
            .zcard(self.config.scheduled_jobs_set())
            .llen(self.config.active_jobs_list())
            .exists(self.marker_key())
            .query_async(&mut conn)
            .await?;
        Ok((scheduled + active, marker))
    }

    /// Pushes `ids`, in order, as jobs of `job_size` ids (the last one may be smaller), in one
    /// round trip: a burst of 250 for a provider with batches of 100 makes jobs, and so
    /// requests, of 100, 100 and 50.
    pub async fn push(&self, ids: &[i64], job_size: usize) -> anyhow::Result<()> {
        let mut storage = self.storage.clone();
        let jobs: Vec<_> = ids
            .chunks(job_size.max(1))
            .map(|chunk| DeliveryJob {
                delivery_ids: chunk.to_vec(),
            })
            .collect();
        storage
            .push_bulk(jobs)
            .await
            .map_err(|e| anyhow::anyhow!("cannot push to Redis: {e}"))?;
        self.pushed.notify_one();
        Ok(())
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
    }

    /// Workers that sent a heartbeat within the last `within`.
    pub async fn live_workers(&self, within: Duration) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let since = chrono::Utc::now().timestamp() - within.as_secs() as i64;
        redis::cmd("ZCOUNT")
            .arg(self.config.workers_set())
            .arg(since)
            .arg("+inf")
            .query_async(&mut conn)
            .await
    }

    /// Every key of this queue with its size (entries of a hash, set, list or sorted set; 1 for
    /// a string): what the lifecycle test and `herald` operators compare with the baseline.
    pub async fn keys(&self) -> redis::RedisResult<Vec<(String, usize)>> {
        let mut conn = self.conn.clone();
        let keys = scan_keys(&mut conn, &format!("{}:*", self.config.queue)).await?;
        let mut sized = Vec::with_capacity(keys.len());
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
            let cmd = match kind.as_str() {
                "hash" => "HLEN",
                "set" => "SCARD",
                "zset" => "ZCARD",
                "list" => "LLEN",
                _ => {
                    sized.push((key, 1));
                    continue;
                }
            };
            let n: usize = redis::cmd(cmd).arg(&key).query_async(&mut conn).await?;
            sized.push((key, n));
        }
        sized.sort();
        Ok(sized)
    }

    /// Deletes every key of this queue, and its entry in apalis-redis's registry of queues
    /// (`core:apalis:queues:list`, shared by every queue). For tests and benchmarks.
    pub async fn delete_all_keys(&self) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        delete_queue_keys(&mut conn, self.config.queue.as_ref()).await
    }
}

/// Deletes the keys of the queue named `queue` (`<queue>:*`) and its entry in apalis-redis's
/// registry of queues, and nothing else in the database. Returns how many keys were deleted.
pub async fn delete_queue_keys(
    conn: &mut impl redis::aio::ConnectionLike,
    queue: &str,
) -> redis::RedisResult<usize> {
    redis::cmd("ZREM")
        .arg("core:apalis:queues:list")
        .arg(format!("{queue}:workers"))
        .query_async::<()>(conn)
        .await?;
    let keys = scan_keys(conn, &format!("{queue}:*")).await?;
    let mut deleted = 0;
    for chunk in keys.chunks(500) {
        deleted += redis::cmd("DEL")
            .arg(chunk)
            .query_async::<usize>(conn)
            .await?;
    }
    Ok(deleted)
}

/// Every key matching `pattern`, found with SCAN (never KEYS, which blocks Redis).
async fn scan_keys(
    conn: &mut impl redis::aio::ConnectionLike,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The queue as a scrape of the metrics reads it.
impl crate::metrics::QueueReading for Queue {
    async fn depth(&self) -> anyhow::Result<usize> {
        Ok(Queue::depth(self).await?)
    }

    async fn live_workers(&self, within: Duration) -> anyhow::Result<usize> {
        Ok(Queue::live_workers(self, within).await?)
    }
}
