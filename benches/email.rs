//! Herald's side of the comparison with BullMQ's email phase: the real daemon (the built
//! `herald` binary, a process of its own) sends one fire of overdue summaries to a counting SMTP
//! sink, timed from `POST /api/schedules/overdue_summary/trigger` to the last message counted at
//! the sink. One `key=value` line per figure, in the peers' style; `bench/compare.sh` runs it
//! beside BullMQ and prints the table.
//!
//! ```sh
//! cargo bench --bench email                      # every phase, full size
//! SINK_CMD=/path/to/smtp-sink REPS=3 PHASES=email cargo bench --bench email
//! ```
//!
//! Phases (`PHASES`, default all five), each repeated `REPS` times (3) on a fresh database and
//! queue; a summary line gives the median, min and max:
//! - `email`: `USERS` users (20,000): emails/s, the daemon's peak RSS (`VmHWM`), Redis commands
//!   and PostgreSQL commits per email.
//! - `null`: the same with `mail.providers = ["null"]`. Nothing is sent anywhere, so it counts
//!   the deliveries marked sent (`counted=rows_sent_null`), up to the last one's `sent_at`.
//! - `latency`: `LAT_N` emails (10,000) falling due at `LAT_RATE` per second (1,000): from each
//!   email's `due_at` to its arrival at the sink, p50 and p99. This phase always uses the in-repo
//!   sink, which keeps each message with its arrival, and its `X-Herald-Delivery` header (the
//!   delivery's dedup key) matches it to its row; a `SINK_CMD` sink only counts, and a `Date`
//!   header is set when the message is built, before the send, so neither can time an arrival.
//! - `fire100k`: `FIRE_USERS` users (100,000), one fire of overdue summaries: trigger → last email
//!   at the sink.
//! - `plan_under_load`: how long `POST /api/schedules/weekly_report/trigger` takes for
//!   `FIRE_USERS` users while `LOAD_EMAILS` (20,000) overdue summaries are being sent.
//!
//! Under `cargo test` (no `--bench` argument) every phase runs at a tiny size, so CI checks that
//! the bench still works; nothing here asserts a time. There, without PostgreSQL or Redis, it
//! prints a loud `SKIPPED:` line and passes, unless `HERALD_REQUIRE_SERVERS=1`.
//!
//! Other knobs: `SINK_CMD` (a sink taking `HOST PORT COUNT_FILE`, e.g. the peers' smtp-sink;
//! default: the in-repo sink inside this process), `HERALD_BIN` (the daemon's binary), `CONC` and
//! `POOL` (`queue.concurrency` and `mail.pool_size`; Herald's defaults when unset).
//!
//! How the costs are counted: Redis commands are the server's `total_commands_processed` from the
//! trigger to the last email, so other clients of the same server count too; PostgreSQL commits
//! are `xact_commit` of the bench's database from the daemon's start to its exit (its startup,
//! idle polling and shutdown included).
//!
//! Like the tests, it uses `DATABASE_URL`'s PostgreSQL server and `REDIS_URL`'s Redis when they
//! are set (else 127.0.0.1, Redis database 0; 11 to 15 are refused): the databases
//! `herald_bench_email_<pid>` and `…_seed_<users>` and the queue `herald-bench-email-<pid>`, all
//! removed at the end.

#[path = "../tests/support/shared_servers.rs"]
mod shared_servers;
#[path = "support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald::{
    config::Settings,
    schedule::{PlanOptions, plan},
    store::Store,
};
use sqlx::{Connection, PgConnection, PgPool};
use support::{
    daemon::Daemon, env, env_num, free_port, quantile, sink::Sink, stat3, storage::Storage,
};

const PHASES: [&str; 5] = ["email", "null", "latency", "fire100k", "plan_under_load"];
/// How long a count may stand still before a run is called hung (not a judgement of speed).
const STALL: Duration = Duration::from_secs(60);

/// The sizes, from the environment; tiny ones under `cargo test`.
struct Knobs {
    phases: Vec<String>,
    reps: usize,
    users: usize,
    lat_n: i64,
    lat_rate: f64,
    fire_users: usize,
    load_emails: i64,
}

impl Knobs {
    fn read() -> anyhow::Result<Knobs> {
        // `cargo bench` passes `--bench`; `cargo test` does not.
        let full = std::env::args().any(|a| a == "--bench");
        let size = |full_size: usize, tiny: usize| if full { full_size } else { tiny };
        let phases: Vec<String> = env("PHASES", &PHASES.join(" "))
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if let Some(p) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
            anyhow::bail!("PHASES has {p:?}; the phases are {}", PHASES.join(" "));
        }
        let knobs = Knobs {
            phases,
            reps: env_num("REPS", size(3, 1))?,
            users: env_num("USERS", size(20_000, 200))?,
            lat_n: env_num("LAT_N", size(10_000, 100) as i64)?,
            lat_rate: env_num("LAT_RATE", size(1_000, 200) as f64)?,
            fire_users: env_num("FIRE_USERS", size(100_000, 300))?,
            load_emails: env_num("LOAD_EMAILS", size(20_000, 100) as i64)?,
        };
        anyhow::ensure!(knobs.reps >= 1, "REPS is 0; use REPS=1 or more");
        anyhow::ensure!(knobs.lat_rate > 0.0, "LAT_RATE must be above 0");
        Ok(knobs)
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// What the daemon sends through.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Smtp,
    Null,
}

/// The bench's own databases, queue and folder.
struct Bench {
    /// The PostgreSQL server the databases are made on.
    pg: url::Url,
    admin: PgPool,
    redis_url: String,
    redis: redis::aio::MultiplexedConnection,
    /// The database each run gets afresh; templates are `<name>_seed_<users>`.
    name: String,
    queue: String,
    token: String,
    dir: PathBuf,
    seeded: Vec<usize>,
}

impl Bench {
    async fn new() -> anyhow::Result<Bench> {
        let id = std::process::id();
        let pg = support::pg_server()?;
        let admin = Store::connect(&support::database(&pg, "postgres"), 2, false)
            .await
            .context("the bench needs PostgreSQL (DATABASE_URL's server, else 127.0.0.1:5432)")?
            .pg()
            .clone();
        let redis_url = support::redis_url()?;
        let redis = redis::Client::open(redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("the bench needs Redis (REDIS_URL, else 127.0.0.1:6379)")?;
        let dir = std::env::temp_dir().join(format!("herald-bench-email-{id}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Bench {
            pg,
            admin,
            redis_url,
            redis,
            name: format!("herald_bench_email_{id}"),
            queue: format!("herald-bench-email-{id}"),
            token: uuid::Uuid::new_v4().simple().to_string(),
            dir,
            seeded: Vec::new(),
        })
    }

    async fn exec(&self, sql: String) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    fn url(&self) -> String {
        support::database(&self.pg, &self.name)
    }

    /// A fresh database holding `users` seeded users (a copy of a template seeded once per size)
    /// and an empty queue.
    async fn fresh(&mut self, users: usize) -> anyhow::Result<()> {
        let template = format!("{}_seed_{users}", self.name);
        if !self.seeded.contains(&users) {
            self.exec(format!("CREATE DATABASE {template}")).await?;
            self.seeded.push(users);
            let store = Store::connect(&support::database(&self.pg, &template), 8, true).await?;
            store.migrate().await?;
            let started = Instant::now();
            let seeded = herald::seed::seed(
                &herald::source::demo::Demo::connect(store.url()).await?,
                users,
                1,
                Utc::now(),
            )
            .await?;
            store.pg().close().await;
            println!(
                "# seed users={} tasks={} seconds={:.1}",
                seeded.users,
                seeded.tasks,
                started.elapsed().as_secs_f64()
            );
        }
        self.exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        self.exec(format!("CREATE DATABASE {} TEMPLATE {template}", self.name))
            .await?;
        herald::queue::delete_queue_keys(&mut self.redis, &self.queue).await?;
        Ok(())
    }

    /// The daemon's whole configuration: nothing comes from the caller's environment.
    fn vars(&self, sink: Option<&Sink>, addr: &str) -> Vec<(String, String)> {
        let mut vars = vec![
            ("DATABASE_URL", self.url()),
            ("REDIS_URL", self.redis_url.clone()),
            ("HERALD_HTTP_ADDR", addr.to_owned()),
            ("HERALD_API_TOKEN", self.token.clone()),
            ("HERALD__QUEUE__NAME", self.queue.clone()),
            (
                "HERALD__TEMPLATES__DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/templates").to_owned(),
            ),
            // Only the bench's triggers plan.
            ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
            // As in production: every email carries its signed unsubscribe link and headers.
            ("HERALD_PUBLIC_URL", "https://herald.example.com".to_owned()),
            (
                "HERALD_UNSUBSCRIBE_KEY",
                "bench-unsubscribe-key-0123456789abcdef".to_owned(),
            ),
        ];
        match sink {
            Some(sink) => {
                vars.push(("SMTP_URL", sink.url()));
                vars.push(("HERALD__MAIL__PROVIDERS", r#"["smtp"]"#.to_owned()));
            }
            None => vars.push(("HERALD__MAIL__PROVIDERS", r#"["null"]"#.to_owned())),
        }
        for (knob, key) in [
            ("CONC", "HERALD__QUEUE__CONCURRENCY"),
            ("POOL", "HERALD__MAIL__POOL_SIZE"),
        ] {
            if let Ok(value) = std::env::var(knob) {
                vars.push((key, value));
            }
        }
        vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Redis's `total_commands_processed`.
    async fn redis_commands(&mut self) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut self.redis)
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .context("Redis's INFO stats has no total_commands_processed")
    }

    /// `xact_commit` of the run's database, once no session is left on it: a backend reports
    /// its counts when it exits (or, while idle, up to seconds later).
    async fn commits(&self) -> anyhow::Result<i64> {
        for _ in 0..200 {
            let sessions: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.name)
                    .fetch_one(&self.admin)
                    .await?;
            if sessions == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sqlx::query_scalar(
            "SELECT coalesce(xact_commit, 0) FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await?)
    }

    /// Plans one overdue summary per user with something overdue (as the trigger would) and
    /// keeps the first `keep` of them, all queued.
    async fn plan_overdue(&self, keep: i64) -> anyhow::Result<(Store, i64)> {
        let settings = Settings::load_from(
            &herald::kinds::defaults(),
            None,
            &self.vars(None, "127.0.0.1:0"),
        )?;
        let store = Store::connect(&self.url(), 4, true).await?;
        let schedule = settings
            .schedule("overdue_summary")
            .context("the built-in overdue_summary schedule")?;
        let options = PlanOptions {
            at: Utc::now(),
            user_id: None,
            dry_run: false,
            ids: false,
        };
        let clock = herald::clock::Clock::System;
        plan(&store, schedule, &options, &clock, &settings.retention).await?;
        sqlx::query(
            "DELETE FROM herald.deliveries WHERE id NOT IN
               (SELECT id FROM herald.deliveries WHERE status = 'queued' ORDER BY id LIMIT $1)",
        )
        .bind(keep)
        .execute(store.pg())
        .await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM herald.deliveries")
            .fetch_one(store.pg())
            .await?;
        Ok((store, n))
    }

    async fn start(
        &self,
        vars: &[(String, String)],
        addr: &str,
        tag: &str,
    ) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon::start(vars, &self.dir.join(format!("herald-{tag}.log")))?;
        daemon.wait_ready(addr, Duration::from_secs(60)).await?;
        Ok(daemon)
    }

    /// Removes the bench's databases, queue keys and folder.
    async fn clean_up(mut self) -> anyhow::Result<()> {
        self.exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        for users in std::mem::take(&mut self.seeded) {
            self.exec(format!(
                "DROP DATABASE IF EXISTS {}_seed_{users} WITH (FORCE)",
                self.name
            ))
            .await?;
        }
        herald::queue::delete_queue_keys(&mut self.redis, &self.queue).await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Plans `schedule` for every user through the API; returns how many deliveries it planned.
async fn trigger(addr: &str, token: &str, schedule: &str) -> anyhow::Result<i64> {
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/api/schedules/{schedule}/trigger"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "POST /api/schedules/{schedule}/trigger answered {status}: {body}"
    );
    body["planned"]
        .as_i64()
        .with_context(|| format!("the trigger's answer has no count `planned`: {body}"))
}

/// Waits until `n` deliveries are sent or failed and returns the last `sent_at`. The reads run in
/// one transaction that is rolled back, so they add nothing to the database's commits.
async fn wait_rows_done(url: &str, n: i64) -> anyhow::Result<SystemTime> {
    let mut conn = PgConnection::connect(url).await?;
    let mut reads = conn.begin().await?;
    let mut progress = (-1, Instant::now());
    loop {
        let (done, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status IN ('sent', 'failed')), max(sent_at) FROM herald.deliveries",
        )
        .fetch_one(&mut *reads)
        .await?;
        if done >= n {
            reads.rollback().await?;
            conn.close().await?;
            return Ok(last.map(SystemTime::from).unwrap_or_else(SystemTime::now));
        }
        if done != progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() > STALL {
            anyhow::bail!("{done} of {n} deliveries were done and no more for {STALL:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One fire of overdue summaries, trigger → last email.
struct Fire {
    n: i64,
    secs: f64,
    peak_rss_mb: f64,
    redis_cmds: u64,
    pg_commits: i64,
    /// From the trigger's answer (planning done) to the last email: the delivery path alone.
    send_secs: f64,
    /// Messages the sink counted (`None` for the null provider).
    received: Option<u64>,
    sent: i64,
    failed: i64,
    /// The daemon's exit code after SIGTERM.
    exit: String,
    /// Herald's state on disk afterwards, per sent email, with the payloads and without them.
    storage: Storage,
    storage_pruned: Storage,
}

async fn fire(
    b: &mut Bench,
    users: usize,
    transport: Transport,
    tag: &str,
) -> anyhow::Result<Fire> {
    b.fresh(users).await?;
    let sink = match transport {
        Transport::Smtp => Some(Sink::start(&b.dir).await?),
        Transport::Null => None,
    };
    let addr = format!("127.0.0.1:{}", free_port()?);
    let vars = b.vars(sink.as_ref(), &addr);
    let pg_before = b.commits().await?;
    let daemon = b.start(&vars, &addr, tag).await?;
    let redis_before = b.redis_commands().await?;
    let triggered = SystemTime::now();
    let n = trigger(&addr, &b.token, "overdue_summary").await?;
    // The trigger answers once planning is committed: from here on it is the delivery path.
    let planned = SystemTime::now();
    let last = match &sink {
        Some(sink) => sink.wait_for(n as u64, STALL).await?,
        None => wait_rows_done(&b.url(), n).await?,
    };
    let redis_cmds = b.redis_commands().await?.saturating_sub(redis_before);
    let peak_rss_mb = daemon.peak_rss_mb();
    let exit = daemon.stop().await?;
    let pg_commits = b.commits().await? - pg_before;
    let received = sink.map(|s| s.count());
    let mut conn = PgConnection::connect(&b.url()).await?;
    let (sent, failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed') FROM herald.deliveries",
    )
    .fetch_one(&mut conn)
    .await?;
    let storage = Storage::measure(&mut conn).await?;
    // The same rows once `retention.payload` has passed: what most of `retention.sent` holds.
    let store = Store::connect(&b.url(), 2, true).await?;
    store
        .prune_payloads(Utc::now() + chrono::Duration::minutes(1), 1000)
        .await?;
    store.pg().close().await;
    let storage_pruned = Storage::measure(&mut conn).await?;
    conn.close().await?;
    Ok(Fire {
        storage,
        storage_pruned,
        n,
        secs: last.duration_since(triggered)?.as_secs_f64(),
        send_secs: last.duration_since(planned)?.as_secs_f64(),
        peak_rss_mb,
        redis_cmds,
        pg_commits,
        received,
        sent,
        failed,
        exit: exit
            .code()
            .map_or_else(|| exit.to_string(), |c| c.to_string()),
    })
}

/// `email`, `null` and `fire100k`: REPS fires, one line each and a summary.
async fn fires(
    b: &mut Bench,
    k: &Knobs,
    phase: &str,
    users: usize,
    transport: Transport,
) -> anyhow::Result<()> {
    let label = match transport {
        Transport::Smtp => format!("transport=smtp sink={}", support::sink::chosen_label()),
        Transport::Null => "transport=null counted=rows_sent_null".to_owned(),
    };
    let head = format!("peer=herald phase={phase} {label} schedule=overdue_summary users={users}");
    let mut runs = Vec::new();
    for rep in 1..=k.reps {
        let f = fire(b, users, transport, &format!("{phase}-{rep}")).await?;
        let received = f
            .received
            .map(|r| format!(" sink_received={r}"))
            .unwrap_or_default();
        println!(
            "# rep={rep} {head} n={} secs={:.2} emails_per_s={:.0} send_secs={:.2} send_emails_per_s={:.0}{received} rows_sent={} failed={} peak_rss_mb={:.1} redis_cmds={} redis_cmds_per_email={:.2} pg_commits={} pg_commits_per_email={:.2} herald_exit={}",
            f.n,
            f.secs,
            f.n as f64 / f.secs,
            f.send_secs,
            f.n as f64 / f.send_secs,
            f.sent,
            f.failed,
            f.peak_rss_mb,
            f.redis_cmds,
            f.redis_cmds as f64 / f.n as f64,
            f.pg_commits,
            f.pg_commits as f64 / f.n as f64,
            f.exit
        );
        let storage = format!("peer=herald phase=storage schedule=overdue_summary users={users}");
        println!(
            "# rep={rep} {}",
            f.storage.line(&format!("{storage} payload=kept"))
        );
        println!(
            "# rep={rep} {}",
            f.storage_pruned.line(&format!("{storage} payload=removed"))
        );
        runs.push(f);
    }
    let of = |f: fn(&Fire) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let (rate, rate_min, rate_max) = stat3(&of(|f| f.n as f64 / f.secs));
    let (secs, secs_min, secs_max) = stat3(&of(|f| f.secs));
    let (send, send_min, send_max) = stat3(&of(|f| f.n as f64 / f.send_secs));
    let per_email = |f: fn(&Fire) -> f64| stat3(&of(f)).0;
    println!(
        "{head} n={} reps={} emails_per_s={rate:.0} min={rate_min:.0} max={rate_max:.0} seconds={secs:.2} seconds_min={secs_min:.2} seconds_max={secs_max:.2} send_emails_per_s={send:.0} send_min={send_min:.0} send_max={send_max:.0} peak_rss_mb={:.1} redis_cmds_per_email={:.2} pg_commits_per_email={:.2}",
        runs[0].n,
        runs.len(),
        per_email(|f| f.peak_rss_mb),
        per_email(|f| f.redis_cmds as f64 / f.n as f64),
        per_email(|f| f.pg_commits as f64 / f.n as f64),
    );
    Ok(())
}

/// `latency`: one run's p50, p99 and max in ms, and how many emails it timed.
async fn latency_run(b: &mut Bench, k: &Knobs, rep: usize) -> anyhow::Result<(f64, f64, f64, i64)> {
    b.fresh(k.users).await?;
    let sink = Sink::recording().await;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let vars = b.vars(Some(&sink), &addr);
    let (store, n) = b.plan_overdue(k.lat_n).await?;
    // Not due until the daemon is ready.
    sqlx::query("UPDATE herald.deliveries SET due_at = now() + interval '1 day'")
        .execute(store.pg())
        .await?;
    let daemon = b.start(&vars, &addr, &format!("latency-{rep}")).await?;
    sqlx::query(
        "WITH o AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM herald.deliveries)
         UPDATE herald.deliveries d SET due_at = now() + interval '1 second' + o.k * ($1 * interval '1 millisecond')
         FROM o WHERE d.id = o.id",
    )
    .bind(1000.0 / k.lat_rate)
    .execute(store.pg())
    .await?;
    sink.wait_for(n as u64, STALL).await?;
    daemon.stop().await?;
    let due: HashMap<String, DateTime<Utc>> =
        sqlx::query_as("SELECT dedup_key, due_at FROM herald.deliveries")
            .fetch_all(store.pg())
            .await?
            .into_iter()
            .collect();
    store.pg().close().await;
    let mut first: HashMap<String, SystemTime> = HashMap::new();
    let kept = sink.in_repo().expect("the in-repo sink").messages();
    for message in kept {
        if let Some(key) = message.header("X-Herald-Delivery") {
            first.entry(key).or_insert(message.at);
        }
    }
    let mut ms: Vec<f64> = first
        .iter()
        .filter_map(|(key, at)| {
            let due = SystemTime::from(*due.get(key)?);
            Some(match at.duration_since(due) {
                Ok(d) => d.as_secs_f64() * 1000.0,
                Err(early) => -early.duration().as_secs_f64() * 1000.0,
            })
        })
        .collect();
    anyhow::ensure!(
        ms.len() as i64 == n,
        "{} of {n} emails arrived with a known X-Herald-Delivery key",
        ms.len()
    );
    ms.sort_by(f64::total_cmp);
    Ok((quantile(&ms, 0.5), quantile(&ms, 0.99), ms[ms.len() - 1], n))
}

async fn latency(b: &mut Bench, k: &Knobs) -> anyhow::Result<()> {
    let head = format!(
        "peer=herald phase=latency metric=due_to_sink transport=smtp sink=in-repo users={} rate={}",
        k.users, k.lat_rate
    );
    let (mut p50, mut p99, mut n) = (Vec::new(), Vec::new(), 0);
    for rep in 1..=k.reps {
        let (a, b99, max, count) = latency_run(b, k, rep).await?;
        println!("# rep={rep} {head} n={count} p50_ms={a:.1} p99_ms={b99:.1} max_ms={max:.1}");
        p50.push(a);
        p99.push(b99);
        n = count;
    }
    let (a, a_min, a_max) = stat3(&p50);
    let (c, c_min, c_max) = stat3(&p99);
    println!(
        "{head} n={n} reps={} p50_ms={a:.1} p50_min={a_min:.1} p50_max={a_max:.1} p99_ms={c:.1} p99_min={c_min:.1} p99_max={c_max:.1}",
        p50.len()
    );
    Ok(())
}

/// `plan_under_load`: one run's seconds, deliveries planned, emails counted at the sink while
/// planning, and emails of the load still to send when the plan was done.
async fn plan_under_load_run(
    b: &mut Bench,
    k: &Knobs,
    rep: usize,
) -> anyhow::Result<(f64, i64, u64, i64)> {
    b.fresh(k.fire_users).await?;
    let sink = Sink::start(&b.dir).await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let vars = b.vars(Some(&sink), &addr);
    let (store, load) = b.plan_overdue(k.load_emails).await?;
    store.pg().close().await;
    let daemon = b
        .start(&vars, &addr, &format!("plan_under_load-{rep}"))
        .await?;
    // The load is under way: some of it has arrived.
    sink.wait_for((load as u64 / 20).clamp(1, 500), STALL)
        .await?;
    let before = sink.count();
    let started = Instant::now();
    let planned = trigger(&addr, &b.token, "weekly_report").await?;
    let secs = started.elapsed().as_secs_f64();
    let during = sink.count() - before;
    let left = load - sink.count() as i64;
    daemon.stop().await?;
    Ok((secs, planned, during, left))
}

async fn plan_under_load(b: &mut Bench, k: &Knobs) -> anyhow::Result<()> {
    let head = format!(
        "peer=herald phase=plan_under_load schedule=weekly_report users={} load=overdue_summary load_emails={} transport=smtp sink={}",
        k.fire_users,
        k.load_emails,
        support::sink::chosen_label()
    );
    let (mut secs, mut during, mut planned) = (Vec::new(), Vec::new(), 0);
    for rep in 1..=k.reps {
        let (s, p, d, left) = plan_under_load_run(b, k, rep).await?;
        println!(
            "# rep={rep} {head} planned={p} seconds={s:.2} emails_during_plan={d} load_left_after_plan={left}"
        );
        secs.push(s);
        during.push(d as f64);
        planned = p;
    }
    let (s, s_min, s_max) = stat3(&secs);
    println!(
        "{head} planned={planned} reps={} seconds={s:.2} min={s_min:.2} max={s_max:.2} emails_during_plan={:.0}",
        secs.len(),
        stat3(&during).0
    );
    Ok(())
}

async fn run(b: &mut Bench, k: &Knobs) -> anyhow::Result<()> {
    println!(
        "# herald email bench: phases={} reps={} users={} lat_n={} lat_rate={} fire_users={} load_emails={} herald={} {}",
        k.phases.join(","),
        k.reps,
        k.users,
        k.lat_n,
        k.lat_rate,
        k.fire_users,
        k.load_emails,
        support::daemon::herald_bin().display(),
        Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    if k.runs("email") {
        fires(b, k, "email", k.users, Transport::Smtp).await?;
    }
    if k.runs("null") {
        fires(b, k, "null", k.users, Transport::Null).await?;
    }
    if k.runs("latency") {
        latency(b, k).await?;
    }
    if k.runs("fire100k") {
        fires(b, k, "fire100k", k.fire_users, Transport::Smtp).await?;
    }
    if k.runs("plan_under_load") {
        plan_under_load(b, k).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let knobs = Knobs::read()?;
    // Under `cargo test` (no `--bench`), as the tests: without the servers, a loud SKIPPED line.
    let tiny = !std::env::args().any(|a| a == "--bench");
    if tiny && !shared_servers::servers_answer("benches/email.rs (tiny, under cargo test)") {
        return Ok(());
    }
    let mut bench = Bench::new().await?;
    let result = run(&mut bench, &knobs).await;
    bench.clean_up().await?;
    result
}
