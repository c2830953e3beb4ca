//! What a fire may leave behind, read after each: on the servers the queue's footprint in
//! Redis, which must come back near the baseline; embedded, the state file, which must hold no
//! job and no claim of a finished fire, no worker of a process that is gone, and grow only by
//! the fire's records.

use std::time::Duration;

use crate::home::{FileFigures, Home, State};

/// The queue's Redis figures may end a fire this much above the baseline (dead workers' entries,
/// the gate's keys).
pub const KEY_SLACK: u64 = 16;

/// What the state file may grow by per email planned: its delivery row (the overdue summary's
/// payload), its attempts and their index entries, with room to spare.
pub const FILE_BYTES_PER_EMAIL: u64 = 4096;

/// The write-ahead log's most: SQLite checkpoints it every 1,000 pages (4 MB) and reuses it
/// from the start; a log that grows past this means checkpoints never complete.
pub const WAL_MAX: u64 = 64 << 20;

/// The queue's footprint in Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Keys matching `<queue>:*`.
    pub keys: u64,
    /// Members of every `<queue>:inflight:*` set.
    pub inflight: u64,
    pub data: u64,
    pub done: u64,
    pub workers: u64,
    pub used_memory: u64,
}

impl Figures {
    pub fn within(&self, baseline: &Figures, slack: u64) -> bool {
        self.keys <= baseline.keys + slack
            && self.inflight <= baseline.inflight + slack
            && self.data <= baseline.data + slack
            && self.done <= baseline.done + slack
            && self.workers <= baseline.workers + slack
    }

    pub fn short(&self) -> String {
        format!(
            "keys {} inflight {} data {} done {} workers {} mem {}k",
            self.keys,
            self.inflight,
            self.data,
            self.done,
            self.workers,
            self.used_memory / 1024
        )
    }
}

pub async fn figures(url: &str, queue: &str) -> redis::RedisResult<Figures> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:*"))
        .query_async(&mut c)
        .await?;
    let mut inflight = 0;
    for k in keys
        .iter()
        .filter(|k| k.starts_with(&format!("{queue}:inflight:")))
    {
        inflight += redis::cmd("SCARD")
            .arg(k)
            .query_async::<u64>(&mut c)
            .await?;
    }
    let (data, done, workers): (u64, u64, u64) = redis::pipe()
        .hlen(format!("{queue}:data"))
        .scard(format!("{queue}:done"))
        .zcard(format!("{queue}:workers"))
        .query_async(&mut c)
        .await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    let used_memory = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Figures {
        keys: keys.len() as u64,
        inflight,
        data,
        done,
        workers,
        used_memory,
    })
}

/// What the queue and the state hold between fires, in either home.
#[derive(Debug, Clone, Copy, Default)]
pub enum Leftovers {
    #[default]
    Unread,
    Redis(Figures),
    File(FileFigures),
}

impl Leftovers {
    pub fn short(&self) -> String {
        match self {
            Leftovers::Unread => "-".into(),
            Leftovers::Redis(f) => f.short(),
            Leftovers::File(f) => format!(
                "jobs {} sending {} workers {} file {}k wal {}k",
                f.jobs,
                f.sending,
                f.workers,
                f.db_bytes / 1024,
                f.wal_bytes / 1024
            ),
        }
    }

    /// Workers registered (to tell when an idle daemon's workers are up).
    pub fn workers(&self) -> u64 {
        match self {
            Leftovers::Unread => 0,
            Leftovers::Redis(f) => f.workers,
            Leftovers::File(f) => f.workers,
        }
    }

    /// What is wrong with these figures after a fire, against the `baseline` read before fire 1,
    /// with `planned` emails planned since; `None` when nothing is.
    pub fn excess(&self, baseline: &Leftovers, planned: usize) -> Option<String> {
        match (self, baseline) {
            (Leftovers::Redis(now), Leftovers::Redis(base)) => (!now.within(base, KEY_SLACK))
                .then(|| {
                    format!(
                        "the queue's Redis figures did not come back within {KEY_SLACK} of the baseline: [{}] vs [{}]",
                        now.short(),
                        base.short()
                    )
                }),
            (Leftovers::File(now), Leftovers::File(base)) => {
                let grown = base.db_bytes + planned as u64 * FILE_BYTES_PER_EMAIL;
                let mut wrong = Vec::new();
                if now.jobs > 0 {
                    wrong.push(format!("{} jobs are left in the queue's Jobs rows", now.jobs));
                }
                if now.sending > 0 {
                    wrong.push(format!("{} deliveries are left claimed (sending)", now.sending));
                }
                if now.workers > base.workers {
                    wrong.push(format!(
                        "{} workers are registered, {} before fire 1 (a gone process's not deregistered)",
                        now.workers, base.workers
                    ));
                }
                if now.db_bytes > grown {
                    wrong.push(format!(
                        "the file is {} bytes, more than {grown} ({} before fire 1 and {FILE_BYTES_PER_EMAIL} per email planned since)",
                        now.db_bytes, base.db_bytes
                    ));
                }
                if now.wal_bytes > WAL_MAX {
                    wrong.push(format!(
                        "the write-ahead log is {} bytes, more than {WAL_MAX}: checkpoints do not complete",
                        now.wal_bytes
                    ));
                }
                (!wrong.is_empty()).then(|| format!("the state file: {}", wrong.join("; ")))
            }
            (now, base) => Some(format!(
                "cannot compare [{}] with the baseline [{}]",
                now.short(),
                base.short()
            )),
        }
    }
}

/// The queue's and the state's figures now.
pub async fn read(home: &Home, state: &State, queue: &str) -> Result<Leftovers, String> {
    if let Some(file) = state.file_figures(queue).await {
        return file.map(Leftovers::File).map_err(|e| e.to_string());
    }
    let Home::Servers { redis, .. } = home else {
        unreachable!("a home without a file has servers");
    };
    figures(&redis.url(), queue)
        .await
        .map(Leftovers::Redis)
        .map_err(|e| e.to_string())
}

/// Waits (up to 20 s: the janitors' periods are 5 and 10 s) for the figures to have nothing in
/// excess of the baseline, and returns the last figures read.
pub async fn settle(
    home: &Home,
    state: &State,
    queue: &str,
    baseline: &Leftovers,
    planned: usize,
) -> Leftovers {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // A few seconds for the last acks and sweeps, whatever the figures say.
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        // A failed read is not an empty queue: it is read again, and at the deadline it fails
        // the run.
        let now = match read(home, state, queue).await {
            Ok(now) => now,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("cannot read the queue's figures after the fire: {e}")
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if now.excess(baseline, planned).is_none() || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
