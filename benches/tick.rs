//! A tick for many users, measured: seeding, planning each schedule, delivering one tick through
//! the real daemon to a counting SMTP sink, and the delay from due to sent at a steady rate.
//! Prints one `key=value` line per figure, in the style of the peers' benchmarks (see
//! `bench/compare.sh`), so the two can be compared on one machine.
//!
//! ```sh
//! cargo bench --bench tick                      # 100,000 users, every phase
//! USERS=20000 PLANNING=0 DELIVER=0 LAT_N=5000 LAT_RATE=200 cargo bench --bench tick
//! ```
//!
//! Knobs: USERS, CONC (workers), POOL (SMTP connections), PLANNING, DELIVER and LATENCY (0 skips
//! a phase), ONLY (plan this schedule only), LAT_N and LAT_RATE (emails and emails per second of
//! the latency phase), SINK_CMD (an SMTP sink taking `HOST PORT COUNT_FILE`; default: the in-repo
//! sink inside the bench).
//!
//! A plan line also gives the CPU seconds the bench (`cpu_s`: reading, composing) and
//! PostgreSQL (`pg_cpu_s`) spent on it, steadier than wall time on a machine shared with other
//! work. The bench plans on the reserved connections, as the daemon does. Planning while emails
//! are being sent is `benches/email.rs`'s `plan_under_load`.
//!
//! It uses its own database (`herald_bench`, dropped first) and its own queue in Redis
//! database 0. The email and latency figures count rows marked sent in PostgreSQL
//! (`sent_at − due_at`), not messages at the SMTP server; `benches/email.rs` counts those.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use chrono::{DateTime, Utc};
use herald::{
    config::Settings,
    schedule::{PlanOptions, plan},
    store::Store,
};

use support::{PG, REDIS, daemon::Daemon, env, rss_mb_of, sink::Sink};

const DB: &str = "herald_bench";
/// The bench's own queue: set up and cleaned up by its key prefix, nothing else in the database.
const QUEUE: &str = "herald-bench";

fn rss_mb(field: &str) -> f64 {
    rss_mb_of("/proc/self/status", field)
}

/// CPU seconds used so far by this process and by the PostgreSQL backends of the bench's
/// database: steadier than wall time on a machine shared with other work. Linux only.
async fn cpu_seconds(store: &Store) -> anyhow::Result<(f64, f64)> {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(&store.pool)
            .await?;
    let pg = pids
        .iter()
        .map(|p| proc_cpu(&format!("/proc/{p}/stat")))
        .sum();
    Ok((proc_cpu("/proc/self/stat"), pg))
}

/// utime + stime of a `/proc/<pid>/stat`, in seconds (0 when it cannot be read).
fn proc_cpu(stat_file: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    // The command name, in parentheses, may hold spaces; utime and stime are the 12th and 13th
    // fields after it, in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// Empties `deliveries` and plans one overdue summary per user with something overdue.
async fn plan_overdue_afresh(
    store: &Store,
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM deliveries")
        .execute(&store.pool)
        .await?;
    let schedule = settings
        .schedule("overdue_summary")
        .expect("built-in schedule");
    plan(
        store,
        schedule,
        &PlanOptions {
            at: now,
            user_id: None,
            dry_run: false,
            ids: false,
        },
        &herald::clock::Clock::System,
        &settings.retention,
    )
    .await?;
    Ok(())
}

/// What one run of the daemon came to.
struct DaemonRun {
    failed: i64,
    peak_depth: usize,
    peak_rss_mb: f64,
    exit: std::process::ExitStatus,
}

/// Runs the real `herald run` as its own process (so its memory is its own) until `expected`
/// deliveries are sent or failed, then stops it with SIGTERM.
async fn run_daemon(
    vars: &[(String, String)],
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    expected: i64,
    log: &std::path::Path,
) -> anyhow::Result<DaemonRun> {
    let mut vars = vars.to_vec();
    vars.push(("RUST_LOG".into(), "warn".into()));
    let daemon = Daemon::start(&vars, log)?;
    let mut peak_depth = 0;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE status IN ('sent', 'failed')",
        )
        .fetch_one(&store.pool)
        .await?;
        let (scheduled, active): (usize, usize) = redis::pipe()
            .zcard("herald-bench:scheduled")
            .llen("herald-bench:active")
            .query_async(conn)
            .await?;
        peak_depth = peak_depth.max(scheduled + active);
        if done >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let peak_rss_mb = daemon.peak_rss_mb();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'failed'")
        .fetch_one(&store.pool)
        .await?;
    let exit = daemon.stop().await?;
    Ok(DaemonRun {
        failed,
        peak_depth,
        peak_rss_mb,
        exit,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users: usize = env("USERS", "100000").parse()?;
    let deliver = env("DELIVER", "1") == "1";
    let admin = Store::connect(&format!("{PG}/postgres"), 1, false).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .execute(&admin.pool)
    .await?;
    let redis = redis::Client::open(REDIS)?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    herald::queue::delete_queue_keys(&mut conn, QUEUE).await?;

    // A counting SMTP sink: SINK_CMD, else the tests' sink inside this process.
    let sink_dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&sink_dir)?;
    let sink = Sink::start(&sink_dir).await?;

    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", format!("{PG}/{DB}")),
        ("REDIS_URL", REDIS.to_owned()),
        ("SMTP_URL", sink.url()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".into()),
        ("HERALD__QUEUE__NAME", QUEUE.into()),
        ("HERALD__QUEUE__CONCURRENCY", env("CONC", "50")),
        ("HERALD__MAIL__POOL_SIZE", env("POOL", "20")),
        (
            "HERALD__TEMPLATES__DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
        ),
        ("HERALD__SCHEDULES__ENABLED", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load_from(None, &vars)?;

    let store = Store::connect(&settings.database_url, 8, true).await?;
    store.migrate().await?;
    let now: DateTime<Utc> = Utc::now();
    let started = Instant::now();
    let seeded = herald::seed::seed(&store, users, 1, now).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "peer=herald phase=seed n_users={} tasks={} focus_sessions={} seconds={secs:.2} users_per_s={:.0}",
        seeded.users,
        seeded.tasks,
        seeded.focus_sessions,
        seeded.users as f64 / secs
    );

    // The daemon plans on the connections it keeps from its workers: so does the bench.
    let planner = store.reserved();
    let planning = env("PLANNING", "1") == "1";
    let only = std::env::var("ONLY").ok();
    let planned = |s: &&herald::config::ScheduleSettings| {
        planning && only.as_ref().is_none_or(|o| *o == s.name)
    };
    for schedule in settings.schedules.iter().filter(planned) {
        let name = &schedule.name;
        for dry_run in [true, false] {
            let (cpu_before, pg_before) = cpu_seconds(&store).await?;
            let started = Instant::now();
            let report = plan(
                &planner,
                schedule,
                &PlanOptions {
                    at: now,
                    user_id: None,
                    dry_run,
                    ids: false,
                },
                &herald::clock::Clock::System,
                &settings.retention,
            )
            .await?;
            let secs = started.elapsed().as_secs_f64();
            let (cpu_after, pg_after) = cpu_seconds(&store).await?;
            println!(
                "peer=herald phase=plan schedule={name} dry_run={dry_run} n_users={users} zones=40 planned={} skipped={} seconds={secs:.2} users_per_s={:.0} cpu_s={:.2} pg_cpu_s={:.2}",
                report.planned,
                report.skipped,
                users as f64 / secs,
                cpu_after - cpu_before,
                pg_after - pg_before
            );
        }
    }

    // One period of recipient-local fires: every user's 09:00 (07:00, Sunday 17:00, …) in their
    // own zone, as the planner would plan them over the 24 hours (the week, for a weekly
    // schedule) between two fires of the cron.
    for schedule in settings.schedules.iter().filter(planned) {
        let name = &schedule.name;
        sqlx::query("DELETE FROM deliveries")
            .execute(&store.pool)
            .await?;
        let fires = herald::schedule::occurrences::next(&schedule.cron, chrono_tz::UTC, now, 2);
        let span = fires[1].at - fires[0].at;
        // Planned at once, every fire of the period counts as on time.
        let mut schedule = schedule.clone();
        schedule.catch_up = (span + chrono::Duration::days(1)).to_std()?;
        sqlx::query("INSERT INTO schedule_watermarks (schedule, planned_up_to) VALUES ($1, $2) ON CONFLICT (schedule) DO UPDATE SET planned_up_to = $2")
            .bind(name)
            .bind(now - span)
            .execute(&store.pool)
            .await?;
        let started = Instant::now();
        let report = herald::schedule::plan_due(&planner, &schedule, now)
            .await?
            .expect("no other planner");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "peer=herald phase=plan_fires schedule={name} timezone=recipient window={}h n_users={users} zones=40 planned={} skipped={} seconds={secs:.2} users_per_s={:.0}",
            span.num_hours(),
            report.planned,
            report.skipped,
            users as f64 / secs
        );
    }

    if deliver {
        // Deliver one overdue summary per user who has something overdue, through Redis, the
        // workers and SMTP.
        plan_overdue_afresh(&store, &settings, now).await?;
        let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
            .fetch_one(&store.pool)
            .await?;
        let started = Instant::now();
        let run = run_daemon(
            &vars,
            &store,
            &mut conn,
            expected,
            &sink_dir.join("email.log"),
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "peer=herald phase=email transport=smtp-sink n={expected} failed={} seconds={secs:.2} emails_per_s={:.0} peak_queue_depth={} daemon_peak_rss_mb={:.1} daemon_exit={}",
            run.failed,
            expected as f64 / secs,
            run.peak_depth,
            run.peak_rss_mb,
            run.exit
        );
    }

    if env("LATENCY", "1") == "1" {
        // Emails falling due at a steady rate (LAT_RATE per second, like the peers' latency
        // phase): how long from due to sent, through dispatcher, Redis, worker and SMTP.
        let n: i64 = env("LAT_N", "5000").parse()?;
        let rate: f64 = env("LAT_RATE", "200").parse()?;
        plan_overdue_afresh(&store, &settings, now).await?;
        sqlx::query("DELETE FROM deliveries WHERE id NOT IN (SELECT id FROM deliveries ORDER BY id LIMIT $1)")
            .bind(n)
            .execute(&store.pool)
            .await?;
        sqlx::query(
            "WITH o AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM deliveries)
             UPDATE deliveries d SET due_at = now() + interval '3 seconds' + o.k * ($1 * interval '1 millisecond')
             FROM o WHERE d.id = o.id",
        )
        .bind(1000.0 / rate)
        .execute(&store.pool)
        .await?;
        let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
            .fetch_one(&store.pool)
            .await?;
        let run = run_daemon(
            &vars,
            &store,
            &mut conn,
            expected,
            &sink_dir.join("latency.log"),
        )
        .await?;
        let (p50, p99, max): (f64, f64, f64) = sqlx::query_as(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.99) WITHIN GROUP (ORDER BY s), max(s)
             FROM (SELECT extract(epoch FROM sent_at - due_at)::float8 * 1000 AS s FROM deliveries WHERE status = 'sent') t",
        )
        .fetch_one(&store.pool)
        .await?;
        println!(
            "peer=herald phase=latency metric=due_to_sent transport=smtp-sink n={expected} rate={rate} p50_ms={p50:.0} p99_ms={p99:.0} max_ms={max:.0} failed={} daemon_peak_rss_mb={:.1}",
            run.failed, run.peak_rss_mb
        );
    }

    sink.stop();
    let _ = std::fs::remove_dir_all(&sink_dir);
    store.pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .execute(&admin.pool)
    .await?;
    herald::queue::delete_queue_keys(&mut conn, QUEUE).await?;
    println!(
        "# peak RSS of the bench process itself (seeding and planning, not the daemon): {:.1} MB",
        rss_mb("VmHWM:")
    );
    Ok(())
}
