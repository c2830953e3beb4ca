//! The apalis workers: one handler call per job, and the ack that removes the job from Redis once
//! its outcome is committed in PostgreSQL.
//!
//! # Why Herald acks by hand
//!
//! apalis-redis acks through the task's result (its `handle_results` script), and only when
//! results are persisted, which would keep one `{q}:meta:<id>` hash per email forever. With
//! `persist_results(false)` it never acks at all: every job stays in `{q}:inflight:<worker>` and
//! `{q}:data` forever, and the first restart after a big fire re-queues them all in one Lua call
//! that fails. So the handler acks itself, in one round trip after the outcome is in PostgreSQL:
//! `SREM {q}:inflight:<worker> id`, `HDEL {q}:data id`, `DEL {q}:meta:id`. Redis is back at its
//! baseline after every email, and a worker's inflight set only ever holds what it is working on.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use apalis::prelude::*;

use super::{DeliveryJob, Queue, housekeeping};
use crate::{
    config::QueueSettings,
    health::{Dependency, Health, is_postgres},
    shutdown::Shutdown,
    store::Store,
    worker::{WorkerDeps, process_one},
};

/// A job whose delivery could not be looked at (PostgreSQL is down) comes back this much later.
const INFRA_RETRY: Duration = Duration::from_secs(5);

/// What the handler needs besides the worker step.
#[derive(Debug, Clone)]
struct Ctx {
    deps: Arc<WorkerDeps>,
    queue: Queue,
    health: Health,
}

/// The apalis handler: one job, one call to [`process_one`], then the ack.
async fn handle(
    job: DeliveryJob,
    task_id: TaskId,
    worker: WorkerContext,
    ctx: Data<Ctx>,
) -> Result<(), BoxDynError> {
    let id = task_id.to_string();
    let result = process_one(&ctx.deps, job.delivery_id).await;
    let done = result.is_ok();
    match result {
        Ok(_) => ctx.health.up(Dependency::Postgres),
        // PostgreSQL could not be read or written. Whatever was claimed keeps its lease, and the
        // job comes back in a few seconds; the outage is logged once.
        Err(e) if is_postgres(&e) => {
            tracing::debug!(
                delivery_id = job.delivery_id,
                error = crate::telemetry::chain(&e),
                "cannot process delivery; it comes back in 5 s"
            );
            ctx.health
                .down(Dependency::Postgres, crate::telemetry::chain(&e));
        }
        Err(e) => tracing::error!(
            delivery_id = job.delivery_id,
            error = crate::telemetry::chain(&e),
            "cannot process delivery; it comes back in 5 s"
        ),
    }
    let acked = ack(&ctx.queue, worker.name(), &id, done).await;
    // A failed ack leaves the id in this worker's inflight set; it is drained when the worker
    // is gone, and a repeated job finds its delivery already recorded.
    let _ = ctx.health.check(Dependency::Redis, acked);
    Ok(())
}

/// Removes a finished job from Redis, or (when `done` is false) puts it back in the scheduled set
/// to be fetched again after [`INFRA_RETRY`].
async fn ack(queue: &Queue, worker: &str, task_id: &str, done: bool) -> redis::RedisResult<()> {
    let c = queue.config();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .srem(queue.inflight_key(worker), task_id)
        .ignore();
    if done {
        pipe.hdel(c.job_data_hash(), task_id)
            .ignore()
            .del(queue.meta_key(task_id))
            .ignore();
    } else {
        let at = chrono::Utc::now().timestamp() + INFRA_RETRY.as_secs() as i64;
        pipe.zadd(c.scheduled_jobs_set(), task_id, at).ignore();
    }
    pipe.query_async::<()>(&mut queue.conn()).await
}

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

/// How long a failed worker waits before apalis restarts it: 1 s, doubling to 10 s while it
/// keeps failing (Redis down), back to 1 s after a minute without failure.
#[derive(Debug, Default)]
struct Backoff(Mutex<Option<(std::time::Instant, Duration)>>);

impl Backoff {
    fn next(&self) -> Duration {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let pause = match *last {
            Some((at, pause)) if at.elapsed() < Duration::from_secs(60) => {
                (pause * 2).min(Duration::from_secs(10))
            }
            _ => Duration::from_secs(1),
        };
        *last = Some((std::time::Instant::now(), pause));
        pause
    }
}

/// Runs the delivery workers until `shutdown`, then lets in-flight sends finish within `grace`
/// and deregisters them. Dead workers' leftovers are drained first, so that apalis-redis never
/// meets an inflight set too big for its scripts.
pub async fn run_workers(
    queue: Queue,
    store: Store,
    deps: Arc<WorkerDeps>,
    q: QueueSettings,
    grace: Duration,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    housekeeping::drain_dead_workers(&queue, &store)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot recover dead workers' jobs before starting: {}",
                crate::telemetry::chain(&e)
            )
        })?;
    let name = worker_name();
    tracing::info!(worker = %name, queue = %q.name, concurrency = q.concurrency, "workers started");
    let ctx = Ctx {
        deps,
        queue: queue.clone(),
        health: health.clone(),
    };
    let names = Arc::new(Mutex::new(Vec::new()));
    let registered = names.clone();
    let backoff = Arc::new(Backoff::default());
    let workers_queue = queue.clone();
    let monitor = Monitor::new()
        .register(move |restarts| {
            let worker = format!("{name}-{restarts}");
            registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(worker.clone());
            WorkerBuilder::new(worker)
                // Pushed jobs land in `{q}:scheduled`; an idle worker only promotes them when it
                // polls. Waking it on each local push (a stream, not apalis's interval polling,
                // which was seen to stall) cuts the pickup delay from a heartbeat to a few ms.
                .backend(
                    workers_queue
                        .storage()
                        .poll_with_stream(workers_queue.pushes()),
                )
                .data(ctx.clone())
                .concurrency(q.concurrency)
                .build(handle)
        })
        .should_restart(move |worker, error| {
            // Almost always Redis going away under the worker: one warning per outage.
            health.down(
                Dependency::Redis,
                format!("worker {} stopped: {error}", worker.name()),
            );
            // apalis restarts at once; while Redis is unreachable that would spin. The callback
            // is synchronous, so pause here, letting the runtime move other tasks off this thread.
            let pause = backoff.next();
            if tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            {
                tokio::task::block_in_place(|| std::thread::sleep(pause));
            }
            true
        })
        .shutdown_timeout(grace);
    let stopped = monitor
        .run_with_signal(async move {
            shutdown.wait().await;
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("the workers stopped with an error: {e}"));
    let names = std::mem::take(&mut *names.lock().unwrap_or_else(|p| p.into_inner()));
    for worker in names {
        if let Err(e) = housekeeping::deregister(&queue, &store, &worker).await {
            tracing::warn!(worker = %worker, error = crate::telemetry::chain(&e), "cannot deregister the worker; the janitor of another process will");
        }
    }
    stopped
}
