//! The dispatcher: moves due deliveries from PostgreSQL into Redis in chunks, never past the
//! queue's high-water mark, and refills Redis at once when it comes back empty.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::sync::Notify;

use super::Queue;
use crate::{
    clock::Clock,
    config::QueueSettings,
    health::{Dependency, Health},
    shutdown::Shutdown,
    store::Store,
};

/// How often the dispatcher makes due again what a dead process left behind in PostgreSQL.
const RECOVER_EVERY: Duration = Duration::from_secs(5);

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

/// What stopped a round: which service failed, and how.
struct RoundError(Dependency, anyhow::Error);

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
                    Dependency::Postgres,
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
            let more = match round(&store, &queue, &q, clock.now()).await {
                Ok(more) => {
                    health.up(Dependency::Redis);
                    health.up(Dependency::Postgres);
                    more
                }
                Err(RoundError(dep, e)) => {
                    health.down(dep, crate::telemetry::chain(&e));
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
async fn round(
    store: &Store,
    queue: &Queue,
    q: &QueueSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, RoundError> {
    let redis = |e: redis::RedisError, what: &str| {
        RoundError(
            Dependency::Redis,
            anyhow::Error::new(e).context(what.to_owned()),
        )
    };
    let pg = |e: sqlx::Error, what: &str| {
        RoundError(
            Dependency::Postgres,
            anyhow::Error::new(e).context(what.to_owned()),
        )
    };
    let (depth, marker) = queue
        .depth_and_marker()
        .await
        .map_err(|e| redis(e, "cannot read the queue depth"))?;
    if !marker {
        refill(store, queue).await?;
    }
    let room = q.high_water.saturating_sub(depth).min(q.dispatch_chunk);
    if room == 0 {
        return Ok(false);
    }
    let ids = store
        .take_due(room as i64, now)
        .await
        .map_err(|e| pg(e, "cannot take due deliveries"))?;
    if ids.is_empty() {
        return Ok(false);
    }
    if let Err(e) = queue.push(&ids).await {
        // Give the rows back so the next round (or another process) pushes them.
        store
            .untake(&ids)
            .await
            .map_err(|e| pg(e, "cannot give back undispatched deliveries"))?;
        return Err(RoundError(Dependency::Redis, e));
    }
    tracing::debug!(count = ids.len(), depth, "dispatched");
    Ok(ids.len() == room)
}

/// Redis has no marker: it restarted empty (or was flushed), so every row PostgreSQL says is
/// waiting in Redis may be gone. Make them all dispatchable again now, rather than after
/// `queue.redispatch_after`, then set the marker. `SET NX` makes one process do it; a job pushed
/// twice meanwhile is harmless, because the claim in PostgreSQL lets only one worker send.
async fn refill(store: &Store, queue: &Queue) -> Result<(), RoundError> {
    let mut conn = queue.conn();
    let first: bool = redis::cmd("SET")
        .arg(queue.marker_key())
        .arg(chrono::Utc::now().to_rfc3339())
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .map(|r| r.is_some())
        .context("cannot set the queue's marker key")
        .map_err(|e| RoundError(Dependency::Redis, e))?;
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
                Dependency::Postgres,
                anyhow::Error::new(e).context("cannot re-dispatch the lost queue"),
            ))
        }
    }
}
