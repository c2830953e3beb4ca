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
//!
//! # Jobs that cannot be read
//!
//! apalis decodes a job before the handler runs, and a decoding error ends the worker; restarted,
//! it meets the same job again. So the workers take each job's bytes as they are in Redis
//! ([`RawJobs`], a pass-through codec) and the handler decodes them: a job it cannot read is moved
//! to `{q}:dead-letter` with its bytes (the last [`DEAD_LETTER_KEEP`]), logged at warn, counted
//! ([`crate::metrics::dead_letters`]) and acked, and the worker goes on.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::*;
use apalis_core::backend::{BackendConfig, WireFormatBackend};

use super::{AnyJob, RedisQueue, housekeeping};
use crate::{
    config::QueueSettings,
    health::{Dependency, Health, is_state_error},
    shutdown::Shutdown,
    store::Store,
    worker::{WorkerDeps, process_job_as},
};

/// A job whose delivery could not be looked at (PostgreSQL is down) comes back this much later.
pub(super) const INFRA_RETRY: Duration = Duration::from_secs(5);

/// What the handler needs besides the worker step.
#[derive(Debug, Clone)]
struct Ctx {
    deps: Arc<WorkerDeps>,
    queue: RedisQueue,
    health: Health,
}

/// How many undecodable jobs `{q}:dead-letter` keeps (the newest).
pub const DEAD_LETTER_KEEP: isize = 1_000;

/// The codec the workers read jobs with: the bytes as they are, decoded by the handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec<Vec<u8>> for RawBytes {
    type Error = Infallible;
    type Compact = Vec<u8>;
    fn encode(&self, bytes: &Vec<u8>) -> Result<Vec<u8>, Infallible> {
        Ok(bytes.clone())
    }
    fn decode(&self, bytes: &Vec<u8>) -> Result<Vec<u8>, Infallible> {
        Ok(bytes.clone())
    }
}

/// A backend whose jobs are their bytes ([`RawBytes`]); everything else is `B`'s.
#[derive(Debug, Clone)]
pub struct RawJobs<B>(pub B);

impl<B: Backend> Backend for RawJobs<B> {
    type Task = B::Task;
    type Error = B::Error;
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        w: &WorkerContext,
    ) -> Poll<Result<(), B::Error>> {
        self.0.poll_ready(cx, w)
    }
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        w: &WorkerContext,
    ) -> Poll<Option<Result<B::Task, B::Error>>> {
        self.0.poll_next(cx, w)
    }
    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        w: &WorkerContext,
    ) -> Poll<Result<(), B::Error>> {
        self.0.poll_close(cx, w)
    }
}

impl<B: BackendConfig> BackendConfig for RawJobs<B> {
    type Args = Vec<u8>;
    type Id = B::Id;
    type Kind = B::Kind;
    type Config = B::Config;
    type Layer = B::Layer;
    fn config(&self) -> &B::Config {
        self.0.config()
    }
    fn middleware(&mut self, worker: &mut WorkerContext) -> B::Layer {
        self.0.middleware(worker)
    }
}

impl<B> WireFormatBackend for RawJobs<B> {
    type Codec = RawBytes;
    type Compact = Vec<u8>;
    fn codec(&self) -> &RawBytes {
        &RawBytes
    }
}

/// The apalis handler: decodes the job, one call to [`process_job`], then the ack. A job that
/// cannot be decoded goes to the dead-letter list.
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
                dead_letter = %ctx.queue.dead_letter_key(),
                "cannot decode a job (not a list of delivery ids); moved to the dead-letter list"
            );
            let moved = dead_letter(&ctx.queue, worker.name(), &id, &bytes).await;
            let _ = ctx.health.check(Dependency::Queue, moved);
            return Ok(());
        }
    };
    let result = run_job(&ctx.deps, &ids, worker.name()).await;
    let done = result.is_ok();
    match result {
        Ok(_) => ctx.health.up(Dependency::State),
        // PostgreSQL could not be read or written. Whatever was claimed keeps its lease, and the
        // job comes back in a few seconds; the outage is logged once.
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
    let acked = ack(&ctx.queue, worker.name(), &id, done).await;
    // A failed ack leaves the id in this worker's inflight set; it is drained when the worker
    // is gone, and a repeated job finds its delivery already recorded.
    let _ = ctx.health.check(Dependency::Queue, acked);
    Ok(())
}

/// Runs [`process_job_as`] in a task of its own and waits for it. apalis drops a worker's
/// handlers when it stops the worker (Redis went away); the job's task goes on regardless: the
/// sends under way finish and are recorded, their leases renewed until then, instead of being
/// dropped with outcomes in hand and sent again once the leases run out. What it had not sent
/// yet asks the gate, which cannot reach Redis either, and goes back to PostgreSQL untried,
/// without an attempt, due at once: the dispatcher pushes it as soon as Redis is back.
pub(super) async fn run_job(
    deps: &Arc<WorkerDeps>,
    ids: &[i64],
    worker: &str,
) -> anyhow::Result<()> {
    let (deps, job_ids, worker) = (deps.clone(), ids.to_vec(), worker.to_owned());
    let job = tokio::spawn(async move {
        process_job_as(&deps, &job_ids, Some(&worker))
            .await
            .map(drop)
    });
    match job.await {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!(
            "the task processing deliveries {ids:?} ended abnormally: {e}"
        )),
    }
}

/// Removes a finished job from Redis, or (when `done` is false) puts it back in the scheduled set
/// to be fetched again after [`INFRA_RETRY`].
async fn ack(
    queue: &RedisQueue,
    worker: &str,
    task_id: &str,
    done: bool,
) -> redis::RedisResult<()> {
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

/// Moves an undecodable job's bytes to `{q}:dead-letter` (keeping the newest
/// [`DEAD_LETTER_KEEP`]) and removes the job, in one round trip.
async fn dead_letter(
    queue: &RedisQueue,
    worker: &str,
    task_id: &str,
    bytes: &[u8],
) -> redis::RedisResult<()> {
    let c = queue.config();
    redis::pipe()
        .atomic()
        .lpush(queue.dead_letter_key(), bytes)
        .ignore()
        .ltrim(queue.dead_letter_key(), 0, DEAD_LETTER_KEEP - 1)
        .ignore()
        .srem(queue.inflight_key(worker), task_id)
        .ignore()
        .hdel(c.job_data_hash(), task_id)
        .ignore()
        .del(queue.meta_key(task_id))
        .ignore()
        .query_async::<()>(&mut queue.conn())
        .await
}

/// This machine's name, as worker names carry it.
pub fn host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "host".into())
}

/// A random id for this process, the same for every worker it runs.
pub fn process_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned())
}

/// A worker name unique to this process start and run, as apalis-redis requires:
/// `herald-<host>-<pid>-<process id>.<run>`, and the monitor adds `-<restarts>`. The host, pid
/// and process id let a restarted process recognise its dead predecessor's workers at once
/// ([`housekeeping::gone_from_this_host`]).
pub fn worker_name() -> String {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "herald-{}-{}-{}.{run}",
        host(),
        std::process::id(),
        process_id()
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

/// The names apalis's monitor gave the workers it started (`<name>-<restarts>`), to deregister
/// them or give back what they held once the monitor has stopped.
#[derive(Debug, Clone, Default)]
pub(super) struct Started(Arc<Mutex<Vec<String>>>);

impl Started {
    /// The name of the worker the monitor starts for the `restarts`-th time, remembered.
    pub(super) fn name(&self, name: &str, restarts: usize) -> String {
        let worker = format!("{name}-{restarts}");
        self.lock().push(worker.clone());
        worker
    }

    /// Every name given so far, taken.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a monitor whose workers are registered until `shutdown`, then lets in-flight jobs finish
/// within `grace`. A worker that stops (its queue went away under it) is reported to `health`
/// once per outage and restarted after a pause that grows while it keeps stopping.
pub(super) async fn supervise(
    monitor: Monitor,
    health: Health,
    grace: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let backoff = Backoff::default();
    monitor
        .should_restart(move |worker, error| {
            health.down(
                Dependency::Queue,
                format!("worker {} stopped: {error}", worker.name()),
            );
            // apalis restarts at once; while the queue is unreachable that would spin. The
            // callback is synchronous, so pause here, letting the runtime move other tasks off
            // this thread.
            let pause = backoff.next();
            if tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            {
                tokio::task::block_in_place(|| std::thread::sleep(pause));
            }
            true
        })
        .shutdown_timeout(grace)
        .run_with_signal(async move {
            shutdown.wait().await;
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("the workers stopped with an error: {e}"))
}

/// Runs the delivery workers until `shutdown`, then lets in-flight sends finish within `grace`
/// and deregisters them. Dead workers' leftovers are drained first, so that apalis-redis never
/// meets an inflight set too big for its scripts.
pub async fn run_workers(
    queue: RedisQueue,
    store: Store,
    deps: Arc<WorkerDeps>,
    q: QueueSettings,
    grace: Duration,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    housekeeping::drain_dead_workers(&queue, &store, housekeeping::When::Starting)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot recover dead workers' jobs before starting: {}",
                crate::telemetry::chain(&e)
            )
        })?;
    let name = worker_name();
    let job_size = super::job_size(&deps.providers);
    let jobs = super::JOBS_AT_ONCE;
    tracing::info!(worker = %name, queue = %q.name, emails_at_once = q.concurrency, job_size, "workers started");
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
            // Pushed jobs land in `{q}:scheduled`; an idle worker only promotes them when it
            // polls. Waking it on each local push (a stream, not apalis's interval polling,
            // which was seen to stall) cuts the pickup delay from a heartbeat to a few ms.
            .backend(RawJobs(
                workers_queue
                    .storage()
                    .poll_with_stream(workers_queue.pushes()),
            ))
            .data(ctx.clone())
            .concurrency(jobs)
            .build(handle)
    });
    let stopped = supervise(monitor, health, grace, shutdown).await;
    for worker in started.take() {
        if let Err(e) = housekeeping::deregister(&queue, &store, &worker).await {
            tracing::warn!(worker = %worker, error = crate::telemetry::chain(&e), "cannot deregister the worker; the janitor of another process will");
        }
    }
    stopped
}
