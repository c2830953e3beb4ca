//! The dispatcher: moves due deliveries from the state store into the queue in chunks, never past
//! the queue's high-water mark, and refills Redis at once when it comes back empty (the embedded
//! queue lives in the state file and cannot).
//!
//! It sleeps until the next delivery falls due (read from PostgreSQL after each round), or until
//! nudged by the planner or an operator's retry, and at most `queue.dispatch_interval`, which
//! bounds how late it sees a row written by another process. Rounds are at least [`LINGER`]
//! apart, so a steady trickle of due rows is taken a few at a time rather than one commit per
//! email.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::sync::Notify;

use super::{Queue, RedisQueue};
use crate::{
    clock::Clock,
    config::QueueSettings,
    health::{Dependency, Health},
    shutdown::Shutdown,
    store::Store,
};

/// How often the dispatcher makes due again what a dead process left behind in PostgreSQL.
const RECOVER_EVERY: Duration = Duration::from_secs(5);

/// The shortest time between two rounds that each found rows due: what a delivery may wait for
/// the deliveries due right after it, to go out in the same job.
pub const LINGER: Duration = Duration::from_millis(5);

/// Moves due deliveries from PostgreSQL into Redis, never letting the queue grow past its
/// high-water mark.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    wake: Arc<Notify>,
    /// How many deliveries one job carries ([`super::job_size`]).
    job_size: usize,
}

/// What stopped a round: which service failed, and how.
struct RoundError(Dependency, anyhow::Error);

impl RoundError {
    fn redis(e: redis::RedisError, what: &str) -> RoundError {
        RoundError(
            Dependency::Queue,
            anyhow::Error::new(e).context(what.to_owned()),
        )
    }

    fn pg(e: sqlx::Error, what: &str) -> RoundError {
        RoundError(
            Dependency::State,
            anyhow::Error::new(e).context(what.to_owned()),
        )
    }
}

impl Dispatcher {
    pub fn new(job_size: usize) -> Dispatcher {
        Dispatcher {
            wake: Arc::new(Notify::new()),
            job_size: job_size.max(1),
        }
    }

    /// Wakes the dispatcher now instead of at its next interval (after planning, say).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown`. It wakes when the next delivery falls due, when nudged, and at
    /// least every `dispatch_interval`. Every few seconds it also recovers what a dead process
    /// left behind.
    /// Failures are reported to `health`, which logs an outage once.
    pub async fn run(
        self,
        store: Store,
        queue: Queue,
        q: QueueSettings,
        clock: Clock,
        health: Health,
        shutdown: Shutdown,
    ) {
        let mut last_recovery = tokio::time::Instant::now() - RECOVER_EVERY;
        while !shutdown.is_triggered() {
            if last_recovery.elapsed() >= RECOVER_EVERY {
                last_recovery = tokio::time::Instant::now();
                match health.check(
                    Dependency::State,
                    store.recover(q.redispatch_after, clock.now()).await,
                ) {
                    Ok((0, 0)) | Err(_) => {}
                    Ok((leases, stale)) => tracing::warn!(
                        expired_leases = leases,
                        stale_dispatches = stale,
                        "made abandoned deliveries due again"
                    ),
                }
            }
            let started = tokio::time::Instant::now();
            let next = match round(&store, &queue, &q, self.job_size, clock.now()).await {
                Ok(next) => {
                    health.up(Dependency::Queue);
                    health.up(Dependency::State);
                    next
                }
                Err(RoundError(dep, e)) => {
                    health.down(dep, crate::telemetry::chain(&e));
                    Next::Idle
                }
            };
            let sleep = match next {
                Next::Now => continue,
                Next::Idle => q.dispatch_interval,
                Next::At(due) => {
                    let wait = (due - clock.now()).to_std().unwrap_or_default();
                    // Not `clamp`, which panics should the interval be shorter than `LINGER`.
                    wait.max(LINGER.saturating_sub(started.elapsed()))
                        .min(q.dispatch_interval)
                }
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

/// When the dispatcher should run its next round.
enum Next {
    /// At once: the round was full and there may be more.
    Now,
    /// When this delivery falls due (by Herald's clock).
    At(chrono::DateTime<chrono::Utc>),
    /// Nothing is waiting, or Redis is full: at the next interval or nudge.
    Idle,
}

/// One round: fill Redis up to the high-water mark with a chunk of due deliveries, in jobs of
/// `job_size`. Says when the next round is due.
async fn round(
    store: &Store,
    queue: &Queue,
    q: &QueueSettings,
    job_size: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Next, RoundError> {
    let depth = match queue.redis() {
        Some(redis) => {
            let (depth, marker) = redis
                .depth_and_marker()
                .await
                .map_err(|e| RoundError::redis(e, "cannot read the queue depth"))?;
            if !marker {
                refill(store, redis).await?;
            }
            depth
        }
        // The embedded queue is in the state file: it cannot come back empty while the state
        // does not, so it has no marker.
        None => queue
            .depth()
            .await
            .map_err(|e| RoundError(Dependency::Queue, e.context("cannot read the queue depth")))?,
    };
    // `high_water` counts jobs, as the crate's scripts do; a chunk holds whole jobs.
    let room = q
        .high_water
        .saturating_sub(depth)
        .saturating_mul(job_size)
        .min(q.dispatch_chunk.max(job_size));
    if room == 0 {
        return Ok(Next::Idle);
    }
    let ids = store
        .take_due(room as i64, now)
        .await
        .map_err(|e| RoundError::pg(e, "cannot take due deliveries"))?;
    if !ids.is_empty() {
        push(store, queue, &ids, job_size).await?;
        tracing::debug!(count = ids.len(), depth, "dispatched");
    }
    if ids.len() == room {
        return Ok(Next::Now);
    }
    let next = store
        .next_due()
        .await
        .map_err(|e| RoundError::pg(e, "cannot read when the next delivery is due"))?;
    Ok(next.map_or(Next::Idle, Next::At))
}

/// Pushes taken rows to Redis, or gives them back to PostgreSQL when Redis refuses them.
async fn push(
    store: &Store,
    queue: &Queue,
    ids: &[i64],
    job_size: usize,
) -> Result<(), RoundError> {
    if let Err(e) = queue.push(ids, job_size).await {
        // Give the rows back so the next round (or another process) pushes them.
        store
            .untake(ids)
            .await
            .map_err(|e| RoundError::pg(e, "cannot give back undispatched deliveries"))?;
        return Err(RoundError(Dependency::Queue, e));
    }
    Ok(())
}

/// Redis has no marker: it restarted empty (or was flushed), so every row PostgreSQL says is
/// waiting in Redis may be gone. Make them all dispatchable again now, rather than after
/// `queue.redispatch_after`, then set the marker. `SET NX` makes one process do it; a job pushed
/// twice meanwhile is harmless, because the claim in PostgreSQL lets only one worker send.
async fn refill(store: &Store, queue: &RedisQueue) -> Result<(), RoundError> {
    let mut conn = queue.conn();
    let first: bool = redis::cmd("SET")
        .arg(queue.marker_key())
        .arg(chrono::Utc::now().to_rfc3339())
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .map(|r| r.is_some())
        .context("cannot set the queue's marker key")
        .map_err(|e| RoundError(Dependency::Queue, e))?;
    if !first {
        return Ok(());
    }
    match store.redispatch_all().await {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::warn!(
                deliveries = n,
                "Redis has lost the queue (restarted without persistence, or flushed); pushing its deliveries again from PostgreSQL"
            );
            Ok(())
        }
        Err(e) => {
            // Try again next round: without the marker, the next round comes back here.
            let _ = redis::cmd("DEL")
                .arg(queue.marker_key())
                .query_async::<()>(&mut conn)
                .await;
            Err(RoundError(
                Dependency::State,
                anyhow::Error::new(e).context("cannot re-dispatch the lost queue"),
            ))
        }
    }
}
