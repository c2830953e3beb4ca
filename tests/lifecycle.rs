//! The lifecycle of a deployment: the real `herald` binary, run as processes against a private
//! Redis, a private PostgreSQL and a counting SMTP server, through three fires of the overdue
//! summary, each hit mid-send by one kind of trouble:
//!
//! 1. SIGTERM, then a restart;
//! 2. SIGKILL, then a restart;
//! 3. Redis restarted (it comes back empty), then PostgreSQL restarted.
//!
//! After each fire it checks that every email arrived (counted per `X-Herald-Delivery` at the
//! SMTP server), counts the copies, and checks that the queue's Redis keys are back near where
//! they were before fire 1. Across the run: no process logs a worker crash, and each outage adds
//! fewer than 20 WARN/ERROR lines. A summary table is printed at the end, also when it fails.
//!
//! `cargo test --test lifecycle` runs it with 600 emails per fire; the full size is
//! `HERALD_LIFECYCLE_EMAILS=12000 cargo test --release --test lifecycle -- --nocapture`
//! (see RELIABILITY.md).

#[path = "support/ports.rs"]
mod ports;
#[path = "support/servers.rs"]
mod servers;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{DateTime, Days, NaiveTime, Utc};
use herald::{
    source::demo::{Demo, NewTask, NewUser},
    store::Store,
};
use serde_json::{Value, json};

use servers::{PrivatePostgres, PrivateRedis, free_port};
use smtp_sink::SmtpSink;

const TOKEN: &str = "lifecycle-token-0123456789abcdef";
/// The queue's Redis figures may end a fire this much above the baseline (dead workers' entries,
/// the gate's keys).
const KEY_SLACK: u64 = 16;
/// An outage may add fewer WARN/ERROR lines than this to a process's log.
const OUTAGE_LINES: usize = 20;
/// Lines that mean a worker crashed, in any process's log.
const CRASH_MARKERS: [&str; 3] = ["worker stopped", "too many results to unpack", "panicked"];

/// The sizes and settings of the run; the bounds on copies are read from them.
#[derive(Debug, Clone, Copy)]
struct Size {
    emails: usize,
    concurrency: usize,
    batch_size: usize,
    pool_size: usize,
}

impl Size {
    fn from_env() -> Size {
        let emails = std::env::var("HERALD_LIFECYCLE_EMAILS")
            .ok()
            .map(|v| v.parse().expect("HERALD_LIFECYCLE_EMAILS is a number"))
            .unwrap_or(600);
        Size {
            emails,
            concurrency: 200,
            batch_size: 4,
            pool_size: 16,
        }
    }

    /// How long the SMTP server waits before accepting each message: a fire then lasts at least
    /// ~5 s, so every event lands mid-send.
    fn smtp_delay(&self) -> Duration {
        let d = Duration::from_secs(5) * self.pool_size as u32 / self.emails.max(1) as u32;
        d.min(Duration::from_millis(150))
    }

    /// A generous bound on the wait for one fire's emails (it only stops a hung test).
    fn fire_deadline(&self) -> Duration {
        Duration::from_secs(120) + Duration::from_millis(20) * self.emails as u32
    }
}

/// One `herald run` process, its stdout and stderr in a log file. Killed if still running when
/// dropped (a panicking test leaves no daemon behind).
struct Herald {
    child: Child,
    log: PathBuf,
    address: String,
}

impl Herald {
    fn spawn(vars: &[(String, String)], log: PathBuf) -> Herald {
        let port = free_port();
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env("HERALD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            // Herald's default filter, unless the run is being debugged: the WARN/ERROR counts
            // are only meaningful with the default.
            .envs(std::env::var("HERALD_LIFECYCLE_RUST_LOG").map(|f| ("RUST_LOG", f)))
            .args(["--log-format", "json", "run"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Herald {
            child: cmd.spawn().expect("cannot run herald"),
            log,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit (the bound only stops a hung test; it is then killed).
    async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The queue's footprint in Redis.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Keys matching `<queue>:*`.
    keys: u64,
    /// Members of every `<queue>:inflight:*` set.
    inflight: u64,
    data: u64,
    done: u64,
    workers: u64,
    used_memory: u64,
}

impl Figures {
    fn within(&self, baseline: &Figures, slack: u64) -> bool {
        self.keys <= baseline.keys + slack
            && self.inflight <= baseline.inflight + slack
            && self.data <= baseline.data + slack
            && self.done <= baseline.done + slack
            && self.workers <= baseline.workers + slack
    }

    fn short(&self) -> String {
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

async fn figures(url: &str, queue: &str) -> redis::RedisResult<Figures> {
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

/// One row of the summary: a fire and what hit it.
#[derive(Debug, Default)]
struct FireRow {
    name: String,
    event: String,
    expected: usize,
    arrived_at_event: usize,
    arrived: usize,
    copies: u64,
    copy_bound: u64,
    /// From the event (the restart, or the server coming back) to the last email of the fire.
    recover: Option<Duration>,
    before: Figures,
    after: Figures,
}

/// One outage: how long until sending resumed, and what it wrote to the log.
#[derive(Debug, Default)]
struct OutageRow {
    name: String,
    down_for: Duration,
    recover: Option<Duration>,
    warn_error_lines: usize,
}

/// The figures so far; printed when dropped, so a failed run shows them too.
#[derive(Default)]
struct Summary {
    size: Option<Size>,
    baseline: Figures,
    fires: Vec<FireRow>,
    outages: Vec<OutageRow>,
    notes: Vec<String>,
    failures: Vec<String>,
    logs: Option<PathBuf>,
}

impl Summary {
    fn render(&self) -> String {
        let mut s = String::new();
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        let _ = writeln!(s, "\n=== herald lifecycle summary ===");
        if let Some(z) = self.size {
            let _ = writeln!(
                s,
                "emails per fire {}, queue.concurrency {}, queue.batch_size {}, mail.pool_size {}, smtp delay {:?}",
                z.emails,
                z.concurrency,
                z.batch_size,
                z.pool_size,
                z.smtp_delay()
            );
        }
        let _ = writeln!(s, "baseline before fire 1: {}", self.baseline.short());
        let _ = writeln!(
            s,
            "{:<7} {:<26} {:>7} {:>9} {:>7} {:>5} {:>7} {:>9}  redis before -> after",
            "fire", "event", "sent", "at event", "lost", "dup", "bound", "recover"
        );
        for f in &self.fires {
            let _ = writeln!(
                s,
                "{:<7} {:<26} {:>7} {:>9} {:>7} {:>5} {:>7} {:>9}  [{}] -> [{}]",
                f.name,
                f.event,
                f.arrived,
                f.arrived_at_event,
                f.expected - f.arrived,
                f.copies,
                f.copy_bound,
                secs(f.recover),
                f.before.short(),
                f.after.short()
            );
        }
        for o in &self.outages {
            let _ = writeln!(
                s,
                "outage {:<16} down {:.1}s, sending resumed {} after it came back, {} WARN/ERROR lines",
                o.name,
                o.down_for.as_secs_f64(),
                secs(o.recover),
                o.warn_error_lines
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if let Some(l) = &self.logs {
            let _ = writeln!(s, "logs: {}", l.display());
        }
        for f in &self.failures {
            let _ = writeln!(s, "FAIL: {f}");
        }
        s
    }
}

impl Drop for Summary {
    fn drop(&mut self) {
        eprintln!("{}", self.render());
    }
}

/// The folder of the processes' logs: removed at the end of a passing run, kept otherwise.
struct Logs(PathBuf);

impl Drop for Logs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// WARN and ERROR lines in `log` between these byte offsets.
fn warn_error_lines(log: &Path, from: u64, to: u64) -> usize {
    let bytes = std::fs::read(log).unwrap_or_default();
    let to = (to as usize).min(bytes.len());
    let from = (from as usize).min(to);
    String::from_utf8_lossy(&bytes[from..to])
        .lines()
        .filter(|l| is_warn_or_error(l))
        .count()
}

fn is_warn_or_error(line: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => matches!(v["level"].as_str(), Some("WARN" | "ERROR")),
        // Not a log event (a panic message, say): counted when it says it is one.
        Err(_) => line.contains("WARN") || line.contains("ERROR"),
    }
}

async fn wait_healthy(http: &reqwest::Client, address: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{address}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald at {address} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(http: &reqwest::Client, address: &str) -> bool {
    match http.get(format!("{address}/readyz")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Plans the overdue summary as if it were `at`; returns the new deliveries' ids.
async fn trigger(http: &reqwest::Client, address: &str, at: DateTime<Utc>) -> Vec<i64> {
    let r = http
        .post(format!("{address}/api/schedules/overdue_summary/trigger"))
        .bearer_auth(TOKEN)
        .json(&json!({ "at": at, "ids": true }))
        .send()
        .await
        .expect("the trigger request");
    let status = r.status().as_u16();
    let report: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "{report}");
    report["delivery_ids"]
        .as_array()
        .expect("delivery_ids")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// The `X-Herald-Delivery` each delivery carries: its dedup key, read from PostgreSQL.
async fn dedup_keys(store: &Store, ids: &[i64]) -> Vec<String> {
    sqlx::query_scalar("SELECT dedup_key FROM deliveries WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

/// Waits until `n` of `keys` arrived at least once. On timeout the panic lists the deliveries
/// that did not arrive, as PostgreSQL sees them.
async fn wait_arrived(sink: &SmtpSink, store: &Store, keys: &[String], n: usize, within: Duration) {
    if arrived_within(sink, keys, n, within).await {
        return;
    }
    let got = sink.arrived(keys);
    let counts = sink.counts();
    let missing: Vec<&String> = keys.iter().filter(|k| counts.delivery(k) == 0).collect();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT json_build_object('id', id, 'status', status, 'attempts', attempts,
                'last_error', last_error, 'dispatched_at', dispatched_at,
                'lease_until', lease_until, 'updated_at', updated_at)::text
         FROM deliveries WHERE dedup_key = ANY($1) LIMIT 20",
    )
    .bind(missing.iter().map(|k| k.as_str()).collect::<Vec<_>>())
    .fetch_all(&store.pool)
    .await
    .unwrap_or_default();
    panic!(
        "only {got} of {n} emails arrived ({} expected in all); missing, as PostgreSQL sees them: {rows:?}; now {}",
        keys.len(),
        chrono::Utc::now()
    );
}

/// Waits until all `n` of `keys` arrived, or `within` passed; says whether they all did. What
/// did not arrive is counted as lost in the fire's row (and fails the run), not hidden behind a
/// panic that would leave the table unprinted.
async fn arrived_within(sink: &SmtpSink, keys: &[String], n: usize, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while sink.arrived(keys) < n {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn wait_recorded(store: &Store, ids: &[i64], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let sent: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 'sent'",
        )
        .bind(ids)
        .fetch_one(&store.pool)
        .await;
        if sent.as_ref().is_ok_and(|&n| n as usize == ids.len()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {sent:?} of {} deliveries are recorded as sent",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies among `keys`: the messages beyond the first of each.
/// The most emails one Herald process holds claimed at once with these settings (SMTP only, so
/// jobs of [`herald::queue::JOB_SIZE`]).
fn claimed_at_once(size: &Size) -> u64 {
    size.concurrency as u64
}

fn copies(sink: &SmtpSink, keys: &[String]) -> u64 {
    let counts = sink.counts();
    keys.iter()
        .map(|k| u64::from(counts.delivery(k).saturating_sub(1)))
        .sum()
}

/// Waits (up to 20 s: the janitor's period is 10 s) for the queue's figures to come back within
/// `KEY_SLACK` of the baseline, and returns the last figures read.
async fn settle(redis_url: &str, queue: &str, baseline: &Figures) -> Figures {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // A few seconds for the last acks and sweeps, whatever the figures say.
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        // A failed read is not an empty queue: it is read again, and at the deadline it fails
        // the run.
        let now = match figures(redis_url, queue).await {
            Ok(now) => now,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("cannot read the queue's Redis figures after the fire: {e}")
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if now.within(baseline, KEY_SLACK) || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every line of every log that says a worker crashed.
fn crash_lines(logs: &Path) -> Vec<String> {
    lines_with(logs, &CRASH_MARKERS)
}

/// Every line of every log that contains one of `markers`, with its file's name.
fn lines_with(logs: &Path, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines() {
            if markers.iter().any(|m| line.contains(m)) {
                found.push(format!(
                    "{}: {}",
                    f.file_name().unwrap().to_string_lossy(),
                    line.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    found
}

/// 07:00 UTC `days` days ago: each fire plans a different day, so its dedup keys are new.
fn days_ago(days: u64) -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(7, 0, 0).unwrap())
        .and_utc()
}

/// Runs blocking server control (pg_ctl, redis-server) without stalling the runtime's other
/// tasks (the SMTP sink among them).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_survives_sigterm_sigkill_and_redis_and_postgres_restarts_mid_send() {
    let size = Size::from_env();
    let n = size.emails;
    let mut summary = Summary::default();
    summary.size = Some(size);

    let mut redis = blocking(PrivateRedis::start);
    let mut pg = blocking(PrivatePostgres::start);
    let mut sink = SmtpSink::start().await;
    sink.set_delay(size.smtp_delay());
    let logs = Logs(std::env::temp_dir().join(format!(
        "herald-lifecycle-{}",
        uuid::Uuid::new_v4().simple()
    )));
    std::fs::create_dir_all(&logs.0).unwrap();
    summary.logs = Some(logs.0.clone());

    let queue = format!(
        "herald-lifecycle-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", pg.url("herald")),
        ("REDIS_URL", redis.url()),
        ("SMTP_URL", sink.url()),
        ("MAIL_FROM", "Herald <herald@example.com>".into()),
        ("HERALD_API_TOKEN", TOKEN.into()),
        ("HERALD__QUEUE__NAME", queue.clone()),
        ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
        ("HERALD__DATABASE__MAX_CONNECTIONS", "16".into()),
        ("HERALD__QUEUE__CONCURRENCY", size.concurrency.to_string()),
        ("HERALD__QUEUE__BATCH_SIZE", size.batch_size.to_string()),
        ("HERALD__MAIL__POOL_SIZE", size.pool_size.to_string()),
        // A dead process's claims come back after 10 s (a lease must outlive a send:
        // mail.timeout + 4 s). `queue.redispatch_after` keeps its default (5 min): what Redis
        // lost and what a dead worker held must come back through the marker key and the drain
        // of dead workers, not through that last resort.
        ("HERALD__MAIL__TIMEOUT", "5s".into()),
        ("HERALD__MAIL__CONNECT_TIMEOUT", "1s".into()),
        ("HERALD__QUEUE__LEASE", "10s".into()),
        // The cron ticks stay off: the test plans each fire through the trigger endpoint.
        ("HERALD__SCHEDULES__ENABLED", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    // The database, and one user per email with a task overdue on every fire's day.
    let migrate = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "herald migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let store = Store::connect(&pg.url("herald"), 4, false).await.unwrap();
    let demo = Demo::connect(&pg.url("herald")).await.unwrap();
    demo.install().await.unwrap();
    let late = days_ago(10);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let users: Vec<_> = chunk
            .iter()
            .map(|i| NewUser::new(&format!("life{i}@example.com"), &format!("Life {i}"), "UTC"))
            .collect();
        let ids = demo.insert_users(&users).await.unwrap();
        let tasks: Vec<_> = ids
            .iter()
            .map(|owner_id| NewTask {
                owner_id: owner_id.clone(),
                title: "Late".into(),
                due_at: Some(late),
                completed_at: None,
            })
            .collect();
        demo.insert_tasks(&tasks).await.unwrap();
    }

    let http = reqwest::Client::new();
    let mut spawned = 0;
    let mut spawn = |vars: &[(String, String)]| {
        spawned += 1;
        Herald::spawn(vars, logs.0.join(format!("herald-{spawned}.log")))
    };
    let mut herald = spawn(&vars);
    wait_healthy(&http, &herald.address).await;
    // The baseline: an idle daemon whose workers have registered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while figures(&redis.url(), &queue).await.unwrap().workers == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no worker registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = figures(&redis.url(), &queue).await.unwrap();
    summary.baseline = baseline;
    let mut seen_keys: HashMap<String, usize> = HashMap::new();
    let event_at = n * 3 / 10;

    // ----- fire 1: SIGTERM mid-send, restart -----
    let before = figures(&redis.url(), &queue).await.unwrap();
    let ids = trigger(&http, &herald.address, days_ago(3)).await;
    assert_eq!(ids.len(), n, "fire 1 planned");
    let keys = dedup_keys(&store, &ids).await;
    for k in &keys {
        assert!(
            seen_keys.insert(k.clone(), 1).is_none(),
            "{k} planned twice"
        );
    }
    wait_arrived(&sink, &store, &keys, event_at, size.fire_deadline()).await;
    let arrived_at_event = sink.arrived(&keys);
    let term = Instant::now();
    herald.signal("-TERM");
    match herald.wait_exit(Duration::from_secs(60)).await {
        Some(status) if status.success() => summary.notes.push(format!(
            "SIGTERM: exited cleanly in {:.1}s",
            term.elapsed().as_secs_f64()
        )),
        Some(status) => summary
            .failures
            .push(format!("SIGTERM: herald exited with {status}")),
        None => summary
            .failures
            .push("SIGTERM: herald did not exit within 60 s".into()),
    }
    if arrived_at_event == n {
        summary
            .notes
            .push("fire 1: every email had arrived before the SIGTERM landed".into());
    }
    herald = spawn(&vars);
    let restarted = Instant::now();
    wait_healthy(&http, &herald.address).await;
    summary.fires.push(FireRow {
        name: "1".into(),
        event: "SIGTERM + restart".into(),
        expected: n,
        arrived_at_event,
        before,
        ..Default::default()
    });
    let all = arrived_within(&sink, &keys, n, size.fire_deadline()).await;
    let recover = restarted.elapsed();
    if all {
        wait_recorded(&store, &ids, Duration::from_secs(60)).await;
    }
    let after = settle(&redis.url(), &queue, &baseline).await;
    let row = summary.fires.last_mut().unwrap();
    row.arrived = sink.arrived(&keys);
    row.copies = copies(&sink, &keys);
    row.recover = Some(recover);
    row.after = after;
    // A SIGTERM lets in-flight sends finish and be recorded: no copies at all.
    row.copy_bound = 0;

    // ----- fire 2: SIGKILL mid-send, restart -----
    let before = figures(&redis.url(), &queue).await.unwrap();
    let ids = trigger(&http, &herald.address, days_ago(2)).await;
    assert_eq!(ids.len(), n, "fire 2 planned");
    let keys = dedup_keys(&store, &ids).await;
    for k in &keys {
        assert!(
            seen_keys.insert(k.clone(), 2).is_none(),
            "{k} planned twice"
        );
    }
    wait_arrived(&sink, &store, &keys, event_at, size.fire_deadline()).await;
    let arrived_at_event = sink.arrived(&keys);
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    if arrived_at_event == n {
        summary
            .notes
            .push("fire 2: every email had arrived before the SIGKILL landed".into());
    }
    herald = spawn(&vars);
    let restarted = Instant::now();
    wait_healthy(&http, &herald.address).await;
    summary.fires.push(FireRow {
        name: "2".into(),
        event: "SIGKILL + restart".into(),
        expected: n,
        arrived_at_event,
        before,
        // At most the emails claimed and not yet recorded at the kill: those of the jobs the
        // workers held (fetched jobs not yet claimed are claimed once, after the restart).
        copy_bound: claimed_at_once(&size),
        ..Default::default()
    });
    let all = arrived_within(&sink, &keys, n, size.fire_deadline()).await;
    let recover = restarted.elapsed();
    if all {
        wait_recorded(&store, &ids, Duration::from_secs(60)).await;
    }
    let after = settle(&redis.url(), &queue, &baseline).await;
    let row = summary.fires.last_mut().unwrap();
    row.arrived = sink.arrived(&keys);
    row.copies = copies(&sink, &keys);
    row.recover = Some(recover);
    row.after = after;

    // ----- fire 3: Redis restart, then PostgreSQL restart, mid-send -----
    let before = figures(&redis.url(), &queue).await.unwrap();
    let ids = trigger(&http, &herald.address, days_ago(1)).await;
    assert_eq!(ids.len(), n, "fire 3 planned");
    let keys = dedup_keys(&store, &ids).await;
    for k in &keys {
        assert!(
            seen_keys.insert(k.clone(), 3).is_none(),
            "{k} planned twice"
        );
    }
    wait_arrived(&sink, &store, &keys, event_at, size.fire_deadline()).await;
    let arrived_at_event = sink.arrived(&keys);
    summary.fires.push(FireRow {
        name: "3".into(),
        event: "Redis + PostgreSQL restart".into(),
        expected: n,
        arrived_at_event,
        before,
        // Emails sent while PostgreSQL went away cannot be recorded and are sent again: at most
        // those of the jobs the workers held.
        copy_bound: claimed_at_once(&size),
        ..Default::default()
    });
    let down_for = Duration::from_secs(2);

    let mark = herald.log_len();
    let outage = Instant::now();
    blocking(|| redis.stop());
    tokio::time::sleep(down_for).await;
    blocking(|| redis.resume());
    let back = Instant::now();
    let recovered = resumed(&sink, &keys, &http, &herald.address, size).await;
    summary.outages.push(OutageRow {
        name: "Redis restart".into(),
        down_for: back - outage,
        recover: recovered.then(|| back.elapsed()),
        warn_error_lines: warn_error_lines(&herald.log, mark, herald.log_len()),
    });

    if sink.arrived(&keys) == n {
        summary
            .notes
            .push("fire 3: every email had arrived before the PostgreSQL restart".into());
    }
    // Only a lower bound on the Redis restart's copies: a claim it stranded may still go again
    // when its lease runs out. The fire's row counts every copy, once every email is recorded.
    let copies_before_pg = copies(&sink, &keys);
    summary.notes.push(format!(
        "fire 3: {copies_before_pg} copies seen before the PostgreSQL restart (those of the Redis restart whose lease had not yet run out are counted in the fire's row)"
    ));
    let mark = herald.log_len();
    let outage = Instant::now();
    blocking(|| pg.stop());
    tokio::time::sleep(down_for).await;
    blocking(|| pg.resume());
    let back = Instant::now();
    let recovered = resumed(&sink, &keys, &http, &herald.address, size).await;
    summary.outages.push(OutageRow {
        name: "PostgreSQL restart".into(),
        down_for: back - outage,
        recover: recovered.then(|| back.elapsed()),
        warn_error_lines: warn_error_lines(&herald.log, mark, herald.log_len()),
    });

    let all = arrived_within(&sink, &keys, n, size.fire_deadline()).await;
    let recover = back.elapsed();
    if all {
        wait_recorded(&store, &ids, Duration::from_secs(60)).await;
    }
    let after = settle(&redis.url(), &queue, &baseline).await;
    let row = summary.fires.last_mut().unwrap();
    row.arrived = sink.arrived(&keys);
    row.copies = copies(&sink, &keys);
    row.recover = Some(recover);
    row.after = after;

    // ----- the end: a clean stop, then the verdicts -----
    herald.signal("-TERM");
    match herald.wait_exit(Duration::from_secs(60)).await {
        Some(status) if status.success() => {}
        other => summary
            .failures
            .push(format!("the last SIGTERM: herald exited with {other:?}")),
    }
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status <> 'sent'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    if failed != 0 {
        summary
            .failures
            .push(format!("{failed} deliveries are not recorded as sent"));
    }
    let total_copies = sink.duplicates();
    let per_fire: u64 = summary.fires.iter().map(|f| f.copies).sum();
    summary.notes.push(format!(
        "SMTP server: {} messages, {} distinct deliveries, {} copies in all",
        sink.total(),
        sink.counts().per_delivery.len(),
        total_copies
    ));
    if total_copies != per_fire {
        summary.failures.push(format!(
            "{} copies of emails no fire planned",
            total_copies - per_fire
        ));
    }
    for f in &summary.fires {
        if f.arrived < f.expected {
            summary.failures.push(format!(
                "fire {} ({}): {} of {} emails never arrived",
                f.name,
                f.event,
                f.expected - f.arrived,
                f.expected
            ));
        }
        if f.copies > f.copy_bound {
            summary.failures.push(format!(
                "fire {} ({}): {} copies, more than the {} in flight",
                f.name, f.event, f.copies, f.copy_bound
            ));
        }
        if !f.after.within(&baseline, KEY_SLACK) {
            summary.failures.push(format!(
                "fire {}: the queue's Redis figures did not come back within {KEY_SLACK} of the baseline: [{}] vs [{}]",
                f.name,
                f.after.short(),
                baseline.short()
            ));
        }
    }
    for o in &summary.outages {
        if o.warn_error_lines >= OUTAGE_LINES {
            summary.failures.push(format!(
                "{}: {} WARN/ERROR lines (fewer than {OUTAGE_LINES} allowed)",
                o.name, o.warn_error_lines
            ));
        }
        if o.recover.is_none() {
            summary.failures.push(format!(
                "{}: sending did not resume while emails were waiting",
                o.name
            ));
        }
    }
    // Not a failure: the worker's safety net for a send that never finishes (see
    // `worker::max_hold`). Counted so that a run says whether it was needed.
    let given_up = lines_with(&logs.0, &["taking far longer than its lease"]);
    summary.notes.push(format!(
        "claims given up by the worker's five-lease limit: {}{}",
        given_up.len(),
        given_up
            .first()
            .map(|l| format!(" (the first: {l})"))
            .unwrap_or_default()
    ));
    let crashes = crash_lines(&logs.0);
    if !crashes.is_empty() {
        summary.failures.push(format!(
            "{} log lines say a worker crashed; the first: {}",
            crashes.len(),
            crashes
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    store.pool.close().await;
    sink.stop();
    let failures = summary.failures.clone();
    assert!(
        failures.is_empty(),
        "{} of the lifecycle's checks failed (see the summary)",
        failures.len()
    );
}

/// After an outage: waits until more emails than were in flight have arrived since, and
/// `/readyz` is ready again (or the whole fire arrived). False when that did not happen within
/// the fire's deadline.
async fn resumed(
    sink: &SmtpSink,
    keys: &[String],
    http: &reqwest::Client,
    address: &str,
    size: Size,
) -> bool {
    let from = sink.arrived(keys);
    let want = (from + size.pool_size + 1).min(keys.len());
    let deadline = tokio::time::Instant::now() + size.fire_deadline();
    let mut arrived = false;
    while tokio::time::Instant::now() < deadline {
        arrived = arrived || sink.arrived(keys) >= want;
        if arrived && ready(http, address).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
