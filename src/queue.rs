//! The apalis-redis queue: its configuration, the dispatcher that feeds it from PostgreSQL, the
//! workers that drain it, and housekeeping for the keys apalis-redis never deletes.
//!
//! # Why Redis only ever holds what is due now
//!
//! apalis-redis 1.0.0 has gaps that Herald designs around on purpose (see
//! `../shared/notes/apalis-1.0.md`):
//!
//! - Its fetch script promotes *every* due id in one `rpush(unpack(ids))`; above ~8,000 due jobs
//!   Lua's unpack limit fails every fetch and wedges the queue. So planned deliveries stay in
//!   PostgreSQL and the [`Dispatcher`] pushes them in chunks, only while the queue holds fewer
//!   than `queue.high_water` jobs (2,000 by default).
//! - An idle worker looks for new jobs only on a heartbeat, and interval polling was seen to
//!   stall. So the heartbeat is short (`queue.heartbeat`, 1 s): it bounds the pickup delay.
//! - Its retries are in-process sleeps holding a worker slot, and failed tasks are re-run by a Lua
//!   script up to 25 times regardless of `max_attempts`. So the handler never fails a job for a
//!   send error: the worker records the attempt and puts the row back in PostgreSQL with a later
//!   `due_at`, which holds no slot and survives a restart.
//! - A worker restarting under the same name within the heartbeat threshold cannot register. So
//!   each process start (and each restart) gets a unique worker name.
//! - Acks are batched: delivery is at least once. The worker's claim on the PostgreSQL row
//!   (`status = 'queued'` → `'sending'`) makes a repeated job a no-op.
//! - `{q}:done`, `{q}:data` and `{q}:meta:*` grow forever. The [`janitor`] removes the data of
//!   finished jobs; their outcome lives in PostgreSQL.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_redis::{ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    clock::Clock,
    config::QueueSettings,
    shutdown::Shutdown,
    store::Store,
    worker::{WorkerDeps, process_one},
};

/// The job on the wire: only a delivery id; the row in PostgreSQL is the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: i64,
}

/// Connects to Redis with a response timeout longer than redis-rs's 500 ms default, whose expiry
/// would end an apalis worker during a slow moment.
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)
        .with_context(|| format!("REDIS_URL {} is not a Redis URL", crate::store::redact(url)))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_connection_manager_with_config(config)
        .await
        .with_context(|| {
            format!(
                "cannot connect to Redis at {}; is it running?",
                crate::store::redact(url)
            )
        })
}

/// The apalis-redis configuration for Herald's queue.
pub fn apalis_config(q: &QueueSettings) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(&q.name)
        .batch_size(q.batch_size)
        .heartbeat_interval(q.heartbeat)
        // A worker killed with SIGKILL leaves its fetched batch in its inflight set; another
        // worker re-queues it after heartbeat × missed_heartbeats (10 s with the defaults).
        .missed_heartbeats(10)
        // Nobody reads the per-task results: the outcome is recorded in PostgreSQL.
        .persist_results(false)
        .emit_events(false)
}

/// A handle to push jobs and read the queue's depth.
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

    pub fn storage(&self) -> RedisStorage<DeliveryJob> {
        self.storage.clone()
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
        let mut conn = self.conn.clone();
        let (scheduled, active): (usize, usize) = redis::pipe()
            .zcard(self.config.scheduled_jobs_set())
            .llen(self.config.active_jobs_list())
            .query_async(&mut conn)
            .await?;
        Ok(scheduled + active)
    }

    pub async fn push(&self, ids: &[i64]) -> anyhow::Result<()> {
        let mut storage = self.storage.clone();
        let jobs: Vec<_> = ids
            .iter()
            .map(|&delivery_id| DeliveryJob { delivery_id })
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

    /// Deletes every key of this queue, and its entry in apalis-redis's registry of queues
    /// (`core:apalis:queues:list`, shared by every queue). For tests and benchmarks.
    pub async fn delete_all_keys(&self) -> redis::RedisResult<usize> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.config.queue);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await?;
        redis::cmd("ZREM")
            .arg("core:apalis:queues:list")
            .arg(self.config.workers_set())
            .query_async::<()>(&mut conn)
            .await?;
        if keys.is_empty() {
            return Ok(0);
        }
        redis::cmd("DEL").arg(&keys).query_async(&mut conn).await
    }
}

/// Moves due deliveries from PostgreSQL into Redis, never letting the queue grow past its
/// high-water mark.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    wake: Arc<Notify>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        Dispatcher {
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the dispatcher now instead of at its next interval (after planning, say).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown`. It polls every `dispatch_interval` (the clock of retries) and wakes
    /// early when nudged. Every few seconds it also recovers what a dead process left behind.
    pub async fn run(
        self,
        store: Store,
        queue: Queue,
        q: QueueSettings,
        clock: Clock,
        shutdown: Shutdown,
    ) {
        let recover_every = Duration::from_secs(5);
        let mut last_recovery = tokio::time::Instant::now() - recover_every;
        while !shutdown.is_triggered() {
            if last_recovery.elapsed() >= recover_every {
                last_recovery = tokio::time::Instant::now();
                match store.recover(q.redispatch_after).await {
                    Ok((0, 0)) => {}
                    Ok((leases, stale)) => tracing::warn!(
                        expired_leases = leases,
                        stale_dispatches = stale,
                        "made abandoned deliveries due again"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot recover abandoned deliveries"),
                }
            }
            let more = match dispatch_round(&store, &queue, &q, clock.now()).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "dispatch round failed; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(q.dispatch_interval) => {}
            }
        }
    }
}

/// One round: fill Redis up to the high-water mark with a chunk of due deliveries. Returns true
/// when there may be more to push right away.
async fn dispatch_round(
    store: &Store,
    queue: &Queue,
    q: &QueueSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let depth = queue.depth().await.context("cannot read the queue depth")?;
    let room = q.high_water.saturating_sub(depth).min(q.dispatch_chunk);
    if room == 0 {
        return Ok(false);
    }
    let ids = store
        .take_due(room as i64, now)
        .await
        .context("cannot take due deliveries")?;
    if ids.is_empty() {
        return Ok(false);
    }
    if let Err(e) = queue.push(&ids).await {
        // Give the rows back so the next round (or another process) pushes them.
        store
            .untake(&ids)
            .await
            .context("cannot give back undispatched deliveries")?;
        return Err(e);
    }
    tracing::debug!(count = ids.len(), depth, "dispatched");
    Ok(ids.len() == room)
}

/// Deletes the data and metadata of finished jobs, which apalis-redis 1.0.0 keeps forever
/// (apalis-redis#10). Safe: a finished job is never fetched again.
pub async fn janitor(queue: Queue, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        loop {
            match sweep(&queue, 1000).await {
                Ok(1000) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot clean finished jobs");
                    break;
                }
            }
        }
    }
}

/// Removes up to `count` finished jobs; returns how many.
pub async fn sweep(queue: &Queue, count: usize) -> redis::RedisResult<usize> {
    let mut conn = queue.conn.clone();
    let c = &queue.config;
    let ids: Vec<String> = redis::cmd("SPOP")
        .arg(c.done_jobs_set())
        .arg(count)
        .query_async(&mut conn)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.hdel(c.job_data_hash(), &ids).ignore();
    for id in &ids {
        pipe.del(format!("{}:{id}", c.job_meta_hash())).ignore();
    }
    pipe.query_async::<()>(&mut conn).await?;
    Ok(ids.len())
}

/// The apalis handler: one job, one call to [`process_one`].
async fn handle(job: DeliveryJob, deps: Data<Arc<WorkerDeps>>) -> Result<(), BoxDynError> {
    match process_one(&deps, job.delivery_id).await {
        Ok(_) => Ok(()),
        Err(e) => {
            // Herald could not record the outcome (PostgreSQL down). Failing the job lets
            // apalis-redis run it again a little later; the row's lease covers the rest.
            tracing::error!(
                delivery_id = job.delivery_id,
                error = format!("{e:#}"),
                "cannot process delivery"
            );
            Err(e.into())
        }
    }
}

/// How long a failed worker waits before apalis restarts it.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// A worker name unique to this process start, as apalis-redis requires.
pub fn worker_name() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "host".into());
    format!(
        "herald-{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Builds the monitor that runs the delivery workers until `shutdown`, then lets in-flight sends
/// finish within `grace`.
pub async fn run_workers(
    queue: Queue,
    deps: Arc<WorkerDeps>,
    q: QueueSettings,
    grace: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let name = worker_name();
    tracing::info!(worker = %name, queue = %q.name, concurrency = q.concurrency, "workers started");
    let monitor = Monitor::new()
        .register(move |restarts| {
            WorkerBuilder::new(format!("{name}-{restarts}"))
                // Pushed jobs land in `{q}:scheduled`; an idle worker only promotes them when it
                // polls. Waking it on each local push (a stream, not apalis's interval polling,
                // which was seen to stall) cuts the pickup delay from up to a heartbeat to a few ms.
                .backend(queue.storage().poll_with_stream(queue.pushes()))
                .data(deps.clone())
                .concurrency(q.concurrency)
                .build(handle)
        })
        .should_restart(|ctx, error| {
            tracing::warn!(worker = %ctx.name(), error = %error, "worker stopped; restarting it in 1 s");
            // apalis restarts at once; while Redis is unreachable that would spin. The callback
            // is synchronous, so pause here, letting the runtime move other tasks off this thread.
            if tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            {
                tokio::task::block_in_place(|| std::thread::sleep(RESTART_PAUSE));
            }
            true
        })
        .shutdown_timeout(grace);
    monitor
        .run_with_signal(async move {
            shutdown.wait().await;
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("the workers stopped with an error: {e}"))
}
