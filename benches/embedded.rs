//! Herald with nothing but itself, beside BullMQ's email phase: the real daemon (the built
//! `herald` binary) with no `DATABASE_URL` and no `REDIS_URL`, so its state and queue are one
//! SQLite file, sends one fire of overdue summaries to a counting SMTP sink, timed from
//! `POST /api/schedules/overdue_summary/trigger` to the last message counted at the sink.
//! `bench/compare.sh` runs it after `benches/email.rs` and prints its row beside BullMQ's.
//!
//! ```sh
//! cargo bench --bench embedded                               # 20,000 users, 3 repetitions
//! SINK_CMD=/path/to/smtp-sink USERS=20000 REPS=3 cargo bench --bench embedded
//! ```
//!
//! Each repetition copies a state file seeded once per size (`herald seed`'s demo tables and views
//! in the file, as on a first try) into a folder of its own, starts the daemon on it and fires.
//! Lines in the peers' style: one `# rep=…` line per repetition and a summary (median, min, max),
//! `phase=embedded`: emails/s, the same from the trigger's answer on (`send_emails_per_s`), the
//! daemon's peak RSS (`VmHWM`) and the file's size after the fire (with its `-wal`).
//!
//! Under `cargo test` (no `--bench` argument) it runs once at a tiny size, so CI checks that the
//! bench still works; it needs no server, and nothing here asserts a time. Knobs: `USERS` (20,000),
//! `REPS` (3), `SINK_CMD` and `HERALD_BIN` as in benches/email.rs, `CONC` and `POOL`
//! (`queue.concurrency` and `mail.pool_size`; Herald's defaults when unset).

#[path = "support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use support::{daemon::Daemon, env_num, free_port, sink::Sink, stat3, trigger};

/// How long a count may stand still before a run is called hung (not a judgement of speed).
const STALL: Duration = Duration::from_secs(60);

/// The bench's folder, removed at the end (also when it fails).
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One fire: how many, how long, how big.
struct Fire {
    n: u64,
    secs: f64,
    send_secs: f64,
    received: u64,
    peak_rss_mb: f64,
    file_mb: f64,
    exit: String,
}

/// A state file holding `users` seeded demo users, made once.
async fn seeded(dir: &Path, users: usize) -> anyhow::Result<PathBuf> {
    let file = dir.join(format!("seed-{users}.db"));
    let demo = herald::source::demo::Demo::connect(&format!("sqlite://{}", file.display()))
        .await
        .context("cannot make the seeded state file")?;
    let started = std::time::Instant::now();
    let seeded = herald::seed::seed(&demo, users, 1, chrono::Utc::now()).await?;
    demo.close().await;
    println!(
        "# seed users={} tasks={} seconds={:.1}",
        seeded.users,
        seeded.tasks,
        started.elapsed().as_secs_f64()
    );
    Ok(file)
}

/// The daemon's whole configuration: the state file, and nothing of the caller's environment.
fn vars(file: &Path, sink: &Sink, addr: &str, token: &str) -> Vec<(String, String)> {
    let mut vars = support::daemon::bench_vars(addr, token);
    for (key, value) in [
        ("HERALD__STATE__FILE", file.display().to_string()),
        ("SMTP_URL", sink.url()),
        ("HERALD__MAIL__PROVIDERS", r#"["smtp"]"#.to_owned()),
    ] {
        vars.push((key.to_owned(), value));
    }
    vars
}

/// Megabytes of `file` and its write-ahead log.
fn file_mb(file: &Path) -> f64 {
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = PathBuf::from(format!("{}-wal", file.display()));
    (size(file.to_owned()) + size(wal)) as f64 / 1e6
}

async fn fire(dir: &Path, seed: &Path, rep: usize) -> anyhow::Result<Fire> {
    let run = dir.join(format!("run-{rep}"));
    std::fs::create_dir_all(&run)?;
    let file = run.join("herald.db");
    std::fs::copy(seed, &file).context("cannot copy the seeded state file")?;
    let sink = Sink::start(&run).await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut daemon = Daemon::start(&vars(&file, &sink, &addr, &token), &run.join("herald.log"))?;
    daemon.wait_ready(&addr, Duration::from_secs(60)).await?;
    let triggered = SystemTime::now();
    let n = u64::try_from(trigger(&addr, &token, "overdue_summary").await?)?;
    let planned = SystemTime::now();
    let last = sink.wait_for(n, STALL).await?;
    let peak_rss_mb = daemon.peak_rss_mb();
    let exit = daemon.stop().await?;
    Ok(Fire {
        n,
        secs: last.duration_since(triggered)?.as_secs_f64(),
        send_secs: last.duration_since(planned)?.as_secs_f64(),
        received: sink.count(),
        peak_rss_mb,
        file_mb: file_mb(&file),
        exit: exit
            .code()
            .map_or_else(|| exit.to_string(), |c| c.to_string()),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let users: usize = env_num("USERS", if full { 20_000 } else { 200 })?;
    let reps: usize = env_num("REPS", if full { 3 } else { 1 })?;
    anyhow::ensure!(reps >= 1, "REPS is 0; use REPS=1 or more");
    let dir =
        Folder(std::env::temp_dir().join(format!("herald-bench-embedded-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let seed = seeded(&dir.0, users).await?;
    let head = format!(
        "peer=herald phase=embedded transport=smtp sink={} schedule=overdue_summary users={users}",
        support::sink::chosen_label()
    );
    let mut runs = Vec::new();
    for rep in 1..=reps {
        let f = fire(&dir.0, &seed, rep).await?;
        println!(
            "# rep={rep} {head} n={} secs={:.2} emails_per_s={:.0} send_secs={:.2} send_emails_per_s={:.0} sink_received={} peak_rss_mb={:.1} file_mb={:.1} herald_exit={}",
            f.n,
            f.secs,
            f.n as f64 / f.secs,
            f.send_secs,
            f.n as f64 / f.send_secs,
            f.received,
            f.peak_rss_mb,
            f.file_mb,
            f.exit
        );
        anyhow::ensure!(
            f.received >= f.n,
            "the sink counted {} of {} emails",
            f.received,
            f.n
        );
        runs.push(f);
    }
    let of = |f: fn(&Fire) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let (rate, rate_min, rate_max) = stat3(&of(|f| f.n as f64 / f.secs));
    let (send, send_min, send_max) = stat3(&of(|f| f.n as f64 / f.send_secs));
    let (rss, rss_min, rss_max) = stat3(&of(|f| f.peak_rss_mb));
    println!(
        "{head} n={} reps={} emails_per_s={rate:.0} min={rate_min:.0} max={rate_max:.0} send_emails_per_s={send:.0} send_min={send_min:.0} send_max={send_max:.0} peak_rss_mb={rss:.1} rss_min={rss_min:.1} rss_max={rss_max:.1}",
        runs[0].n,
        runs.len(),
    );
    Ok(())
}
