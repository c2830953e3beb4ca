//! The apalis-redis half of [`super::Queue`]: its storage, its keys, and the reads and writes
//! the dispatcher, the workers and the janitor make on them.

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_redis::{ConnectionManager, RedisStorage};
use tokio::sync::Notify;

use super::{DeliveryJob, apalis_config};
use crate::config::QueueSettings;

/// The Redis half of [`Queue`]: pushes jobs, reads the queue's depth, reaches its keys.
#[derive(Clone)]
pub struct RedisQueue {
    storage: RedisStorage<DeliveryJob>,
    conn: ConnectionManager,
    config: apalis_redis::Config,
    /// Wakes this process's idle worker right after a push, instead of at its next heartbeat.
    pushed: Arc<Notify>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisQueue({})", self.config.queue)
    }
}

impl RedisQueue {
    pub fn new(conn: ConnectionManager, settings: &QueueSettings) -> RedisQueue {
        let config = apalis_config(settings);
        let storage = RedisStorage::new(conn.clone()).with_config(config.clone());
        RedisQueue {
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
    pub(super) fn pushes(&self) -> futures::stream::BoxStream<'static, ()> {
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

    /// Pushes one job of exactly these bytes, written as apalis-redis writes a job (data,
    /// metadata, then the active list): what another program or a damaged key may leave, and
    /// what tests push to see the dead-letter path.
    pub async fn push_bytes(&self, bytes: &[u8]) -> redis::RedisResult<()> {
        // A ULID's shape (26 characters of Crockford base 32), as apalis-redis names tasks.
        let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let task = format!("01{}", &hex[..24]);
        let c = &self.config;
        redis::pipe()
            .atomic()
            .hset(c.job_data_hash(), &task, bytes)
            .ignore()
            .hset_multiple(
                self.meta_key(&task),
                &[
                    ("attempts", "0"),
                    ("max_attempts", "25"),
                    ("status", "Pending"),
                ],
            )
            .ignore()
            .rpush(c.active_jobs_list(), &task)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        self.pushed.notify_one();
        Ok(())
    }

    /// The dead letters, newest first.
    pub async fn dead_letters(&self) -> redis::RedisResult<Vec<Vec<u8>>> {
        redis::cmd("LRANGE")
            .arg(self.dead_letter_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Jobs whose data Redis still holds: waiting, in a worker's hands, or finished and not
    /// acked (a leak).
    pub async fn stored_jobs(&self) -> redis::RedisResult<usize> {
        redis::cmd("HLEN")
            .arg(self.config.job_data_hash())
            .query_async(&mut self.conn.clone())
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
pub(super) async fn scan_keys(
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
