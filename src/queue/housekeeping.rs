//! Housekeeping for the keys apalis-redis never cleans: dead workers' inflight sets (drained in
//! chunks), their names and metadata, and the `done` and `dead` sets.
//!
//! apalis-redis re-queues a dead worker's inflight set with one `RPUSH unpack(…)`, which fails
//! above ~8,000 ids, stops the worker that tried, and makes its restart fail the same way: a
//! process that died with a big inflight set wedged the queue for good. Herald therefore drains a
//! dead worker's set itself, [`CHUNK`] ids at a time, before its own workers start and then on
//! every janitor round, well before the crate's own threshold. Draining does not push the jobs
//! back to Redis: it gives their deliveries back to the dispatcher in PostgreSQL (a row still
//! `queued` becomes dispatchable again), so the queue never grows past its high-water mark. The
//! rows the dead worker had claimed (`deliveries.claimed_by`) are given back too, at once rather
//! than when their lease runs out, fenced like an expired lease.

use std::time::Duration;

use anyhow::Context;

use super::{AnyJob, ORPHAN_AFTER, RedisQueue, in_redis::scan_keys};
use crate::{
    health::{Dependency, Health},
    shutdown::Shutdown,
    store::Store,
};

/// Ids moved per round trip: far below Lua's unpack limit and quick for Redis.
const CHUNK: usize = 500;

/// How often the janitor runs.
const EVERY: Duration = Duration::from_secs(5);

/// Cleans up every [`EVERY`] until `shutdown`; failures are reported to `health`.
pub async fn janitor(queue: RedisQueue, store: Store, health: Health, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let swept = sweep_finished(&queue).await;
        if let Ok(n) = health.check(Dependency::Queue, swept)
            && n > 0
        {
            tracing::debug!(jobs = n, "removed finished jobs' data");
        }
        if let Err(e) = drain_dead_workers(&queue, &store, When::Running).await {
            tracing::debug!(
                error = crate::telemetry::chain(&e),
                "cannot drain dead workers this round"
            );
        }
    }
}

/// Removes the data of jobs in `{q}:done` and `{q}:dead`, which apalis-redis fills only when it
/// acks itself (Herald's handler acks instead, so these stay empty unless something else used the
/// queue). Their outcome lives in PostgreSQL. Returns how many were removed.
pub async fn sweep_finished(queue: &RedisQueue) -> redis::RedisResult<usize> {
    let c = queue.config();
    let mut conn = queue.conn();
    let mut total = 0;
    for set in [c.done_jobs_set(), c.dead_jobs_set()] {
        loop {
            let ids: Vec<String> = redis::cmd("SPOP")
                .arg(&set)
                .arg(CHUNK)
                .query_async(&mut conn)
                .await?;
            if ids.is_empty() {
                break;
            }
            remove_jobs(queue, &ids).await?;
            total += ids.len();
        }
    }
    Ok(total)
}

/// Deletes the data and metadata of these jobs.
async fn remove_jobs(queue: &RedisQueue, ids: &[String]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.hdel(queue.config().job_data_hash(), ids).ignore();
    for id in ids {
        pipe.del(queue.meta_key(id)).ignore();
    }
    pipe.query_async(&mut queue.conn()).await
}

/// When the dead are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before this process registers its workers: a worker of this host whose process is gone
    /// is known dead at once (see [`gone_from_this_host`]), without waiting for its heartbeat
    /// to age.
    Starting,
    /// Any other time: only the age of the heartbeat counts.
    Running,
}

/// Drains and deregisters every worker that is dead: its heartbeat is older than
/// [`ORPHAN_AFTER`], it has an inflight set but no registration, or (when `Starting`) its process
/// on this host is gone. Also deletes the metadata of workers that are gone. Returns how many
/// jobs were given back.
pub async fn drain_dead_workers(
    queue: &RedisQueue,
    store: &Store,
    when: When,
) -> anyhow::Result<usize> {
    let c = queue.config();
    let mut conn = queue.conn();
    let before = chrono::Utc::now().timestamp() - ORPHAN_AFTER.as_secs() as i64;
    let mut dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(c.workers_set())
        .arg("-inf")
        .arg(before)
        .query_async(&mut conn)
        .await
        .context("cannot list the queue's workers")?;
    if when == When::Starting {
        let all: Vec<String> = redis::cmd("ZRANGE")
            .arg(c.workers_set())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .context("cannot list the queue's workers")?;
        let (host, process) = (super::workers::host(), super::workers::process_id());
        for worker in all {
            if !dead.contains(&worker)
                && gone_from_this_host(&worker, &host, std::process::id(), process)
            {
                dead.push(worker);
            }
        }
    }
    let inflight_prefix = format!("{}:", c.inflight_jobs_set());
    let metadata_prefix = format!("{}:workers:metadata:", c.queue);
    for (prefix, delete) in [(&inflight_prefix, false), (&metadata_prefix, true)] {
        for key in scan_keys(&mut conn, &format!("{prefix}*")).await? {
            let worker = &key[prefix.len()..];
            let registered: Option<f64> = redis::cmd("ZSCORE")
                .arg(c.workers_set())
                .arg(worker)
                .query_async(&mut conn)
                .await?;
            if registered.is_some() {
                continue;
            }
            if delete {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut conn)
                    .await?;
            } else {
                dead.push(worker.to_owned());
            }
        }
    }
    let mut total = 0;
    for worker in &dead {
        total += deregister(queue, store, worker).await?;
    }
    if total > 0 {
        tracing::warn!(
            jobs = total,
            workers = dead.len(),
            "gave back the jobs of workers that died (they are sent again unless already recorded)"
        );
    }
    Ok(total)
}

/// Whether `worker` (a name made by [`super::workers::worker_name`]:
/// `herald-<host>-<pid>-<process>.<run>-<restarts>`) ran on this host in a process that is gone:
/// it has this process's pid but another process id (a container restarted after a SIGKILL,
/// where the pid is 1 again), or a pid that `/proc` does not list. Where there is no `/proc`,
/// only the first rule applies.
pub fn gone_from_this_host(worker: &str, host: &str, pid: u32, process: &str) -> bool {
    let mut parts = worker.rsplitn(4, '-');
    let (Some(_restarts), Some(run), Some(their_pid), Some(prefix)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(their_pid), Some((their_process, _))) = (their_pid.parse::<u32>(), run.split_once('.'))
    else {
        return false;
    };
    if prefix != format!("herald-{host}") {
        return false;
    }
    if their_pid == pid {
        return their_process != process;
    }
    std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{their_pid}")).exists()
}

/// Drains `worker`'s inflight set, gives back the rows it still held claimed
/// ([`Store::release_claims_of`]: a dead worker's claims do not wait for their lease, nor do
/// those a stopped worker's dropped sends left), then removes its name and metadata. Returns how
/// many jobs it still held.
pub async fn deregister(queue: &RedisQueue, store: &Store, worker: &str) -> anyhow::Result<usize> {
    let drained = drain(queue, store, worker).await?;
    let released = store
        .release_claims_of(&[worker.to_owned()])
        .await
        .with_context(|| format!("cannot give back the claims of worker {worker}"))?;
    if released > 0 {
        tracing::warn!(
            worker,
            deliveries = released,
            "gave back the claims of a worker that is gone (sent again unless already recorded)"
        );
    }
    let c = queue.config();
    redis::pipe()
        .zrem(c.workers_set(), worker)
        .ignore()
        .del(format!("{}:workers:metadata:{worker}", c.queue))
        .ignore()
        .del(queue.inflight_key(worker))
        .ignore()
        .query_async::<()>(&mut queue.conn())
        .await
        .with_context(|| format!("cannot deregister worker {worker}"))?;
    Ok(drained)
}

/// Empties `worker`'s inflight set [`CHUNK`] ids at a time. Each chunk's deliveries are given
/// back to the dispatcher in PostgreSQL before their ids leave Redis, so a failure halfway loses
/// nothing: the next round starts again from what is left.
async fn drain(queue: &RedisQueue, store: &Store, worker: &str) -> anyhow::Result<usize> {
    let key = queue.inflight_key(worker);
    let mut conn = queue.conn();
    let mut total = 0;
    loop {
        let ids: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(&key)
            .arg(CHUNK)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("cannot read {key}"))?;
        if ids.is_empty() {
            return Ok(total);
        }
        let data: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(queue.config().job_data_hash())
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        let deliveries: Vec<i64> = data
            .iter()
            .flatten()
            .filter_map(|bytes| serde_json::from_slice::<AnyJob>(bytes).ok())
            .flat_map(AnyJob::ids)
            .collect();
        store
            .untake(&deliveries)
            .await
            .context("cannot give the jobs of a dead worker back to the dispatcher")?;
        redis::cmd("SREM")
            .arg(&key)
            .arg(&ids)
            .query_async::<()>(&mut conn)
            .await?;
        remove_jobs(queue, &ids).await?;
        total += ids.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_of_a_process_that_is_gone_from_this_host_is_dead() {
        let me = std::process::id();
        let ours = format!("herald-box-a-{me}-1a2b3c4d.0-0");
        // Another host, or a name Herald did not make: never judged here.
        let elsewhere = format!("herald-other-{me}-99999999.0-0");
        assert!(!gone_from_this_host(&elsewhere, "box-a", me, "1a2b3c4d"));
        assert!(!gone_from_this_host(
            "someone-else",
            "box-a",
            me,
            "1a2b3c4d"
        ));
        // This pid: ours (another app in this process) is alive; a previous process's is gone.
        assert!(!gone_from_this_host(&ours, "box-a", me, "1a2b3c4d"));
        assert!(gone_from_this_host(&ours, "box-a", me, "5e6f7a8b"));
        // Another pid that is running (this test's own, seen from elsewhere) is alive.
        assert!(!gone_from_this_host(&ours, "box-a", me + 1, "5e6f7a8b"));
        if std::path::Path::new("/proc/self").exists() {
            let gone = format!("herald-box-a-{}-1a2b3c4d.2-3", u32::MAX - 7);
            assert!(gone_from_this_host(&gone, "box-a", me, "1a2b3c4d"));
        }
    }
}
