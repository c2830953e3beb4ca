//! The embedded queue's workers and janitor: apalis workers on the apalis-sqlite backend, one
//! handler call per job through the same path as the Redis half's ([`super::super::workers`]:
//! the raw-bytes codec, [`run_job`]), and the ack that deletes the job from the table once its
//! outcome is committed.

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;

use super::Embedded;
use crate::{
    config::QueueSettings,
    health::{Dependency, Health, is_state_error},
    queue::{
        AnyJob, JOBS_AT_ONCE, ORPHAN_AFTER, job_size,
        workers::{INFRA_RETRY, RawJobs, Started, run_job, supervise, worker_name},
    },
    shutdown::Shutdown,
    store::Store,
    worker::WorkerDeps,
};

/// How often the janitor runs.
const EVERY: Duration = Duration::from_secs(5);

/// What the handler needs besides the worker step.
#[derive(Debug, Clone)]
struct Ctx {
    deps: Arc<WorkerDeps>,
    queue: Embedded,
    health: Health,
}

/// The apalis handler: decodes the job, one call to [`run_job`], then the ack. A job that cannot
/// be decoded goes to the dead letters.
async fn handle(
    bytes: Vec<u8>,
    task_id: TaskId,
    worker: WorkerContext,
    ctx: Data<Ctx>,
) -> Result<(), BoxDynError> {
    let id = task_id.to_string();
    let ids = match serde_json::from_slice::<AnyJob>(&bytes) {
        Ok(job) => job.ids(),
        Err(e) => {
            crate::metrics::dead_lettered();
            tracing::warn!(
                task_id = %id,
                error = %e,
                bytes = %String::from_utf8_lossy(&bytes[..bytes.len().min(200)]),
                dead_letter = %ctx.queue.dead_letter_queue(),
                "cannot decode a job (not a list of delivery ids); moved to the dead letters"
            );
            let moved = ctx.queue.dead_letter(&id).await;
            let _ = ctx.health.check(Dependency::Queue, moved);
            return Ok(());
        }
    };
    let result = run_job(&ctx.deps, &ids, worker.name()).await;
    let done = result.is_ok();
    match result {
        Ok(_) => ctx.health.up(Dependency::State),
        Err(e) if is_state_error(&e) => {
            tracing::debug!(
                deliveries = ?ids,
                error = crate::telemetry::chain(&e),
                "cannot process the job's deliveries; the job comes back in 5 s"
            );
            ctx.health
                .down(Dependency::State, crate::telemetry::chain(&e));
        }
        Err(e) => tracing::error!(
            deliveries = ?ids,
            error = crate::telemetry::chain(&e),
            "cannot process the job's deliveries; the job comes back in 5 s"
        ),
    }
    // A failed ack leaves the job `Queued` under this worker; it comes back when the worker is
    // gone, and a repeated job finds its deliveries already recorded.
    let acked = ctx.queue.ack(&id, done, INFRA_RETRY).await;
    let _ = ctx.health.check(Dependency::Queue, acked);
    Ok(())
}

/// Runs the delivery workers on the embedded queue until `shutdown`, then lets in-flight sends
/// finish within `grace` and gives back what they still held. The jobs left by the previous
/// process on this file come back first ([`Embedded::give_back_orphans`]).
pub async fn run_workers(
    queue: Embedded,
    store: Store,
    deps: Arc<WorkerDeps>,
    q: QueueSettings,
    grace: Duration,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    queue.give_back_orphans(&store).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot recover the previous process's jobs before starting: {}",
            crate::telemetry::chain(&e)
        )
    })?;
    let name = worker_name();
    let job_size = job_size(&deps.providers);
    tracing::info!(worker = %name, queue = %q.name, emails_at_once = q.concurrency, job_size, "workers started on the embedded queue");
    let ctx = Ctx {
        deps,
        queue: queue.clone(),
        health: health.clone(),
    };
    let started = Started::default();
    let names = started.clone();
    let workers_queue = queue.clone();
    let monitor = Monitor::new().register(move |restarts| {
        WorkerBuilder::new(names.name(&name, restarts))
            // Woken on each push (all pushes are this process's), not at the heartbeat.
            .backend(RawJobs(
                workers_queue
                    .storage()
                    .poll_with_stream(workers_queue.pushes()),
            ))
            .data(ctx.clone())
            .concurrency(JOBS_AT_ONCE)
            .build(handle)
    });
    let stopped = supervise(monitor, health, grace, shutdown).await;
    if let Err(e) = queue.give_back(&store, &started.take()).await {
        tracing::warn!(
            error = crate::telemetry::chain(&e),
            "cannot deregister the workers; the next start will"
        );
    }
    stopped
}

/// Every [`EVERY`] until `shutdown`: gives back the jobs of this process's workers that apalis
/// stopped (silent for [`ORPHAN_AFTER`], before the crate's own re-enqueueing after twice that),
/// and deletes finished jobs, should anything have left some. Failures are reported to `health`.
pub async fn janitor(queue: Embedded, store: Store, health: Health, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if let Ok(n) = health.check(Dependency::Queue, queue.sweep_finished().await)
            && n > 0
        {
            tracing::debug!(jobs = n, "removed finished jobs");
        }
        let dead = match health.check(Dependency::Queue, queue.silent_workers(ORPHAN_AFTER).await) {
            Ok(dead) => dead,
            Err(_) => continue,
        };
        if let Err(e) = queue.give_back(&store, &dead).await {
            tracing::debug!(
                error = crate::telemetry::chain(&e),
                "cannot give back dead workers' jobs this round"
            );
        }
    }
}
