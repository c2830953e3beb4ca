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

#[path = "email/bench.rs"]
mod bench;
#[path = "../tests/support/shared_servers.rs"]
mod shared_servers;
#[path = "support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use bench::{Bench, Transport, wait_rows_done};
use chrono::{DateTime, Utc};
use herald::store::Store;
use sqlx::{Connection, PgConnection};
use support::{env, env_num, free_port, quantile, sink::Sink, stat3, storage::Storage, trigger};

const PHASES: [&str; 5] = ["email", "null", "latency", "fire100k", "plan_under_load"];
/// How long a count may stand still before a run is called hung (not a judgement of speed).
pub(crate) const STALL: Duration = Duration::from_secs(60);

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
