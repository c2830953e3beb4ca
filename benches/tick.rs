//! Planning for many users, measured: seeding, then planning each schedule (a dry run, a real
//! one, and one period of recipient-local fires), in-process on the reserved connections, as the
//! daemon plans. Prints one `key=value` line per figure, in the style of the peers' benchmarks.
//!
//! ```sh
//! cargo bench --bench tick                      # 100,000 users, every schedule
//! USERS=20000 ONLY=weekly_report cargo bench --bench tick
//! ```
//!
//! Knobs: USERS, ONLY (plan this schedule only).
//!
//! A plan line also gives the CPU seconds the bench (`cpu_s`: reading, composing) and
//! PostgreSQL (`pg_cpu_s`) spent on it, steadier than wall time on a machine shared with other
//! work. Sending is `benches/email.rs`'s: it runs the daemon and counts emails where they
//! arrive, at the SMTP sink (this bench's email and latency phases, which counted rows marked
//! sent, are retired; BENCHMARKS.md's history quotes them). Planning while emails are being sent
//! is `benches/email.rs`'s `plan_under_load`.
//!
//! It uses its own database (`herald_bench`, dropped first and at the end).

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use chrono::{DateTime, Utc};
use herald::{
    schedule::{PlanOptions, plan},
    store::Store,
};

use support::{PG, env, rss_mb_of};

const DB: &str = "herald_bench";

fn rss_mb(field: &str) -> f64 {
    rss_mb_of("/proc/self/status", field)
}

/// CPU seconds used so far by this process and by the PostgreSQL backends of the bench's
/// database: steadier than wall time on a machine shared with other work. Linux only.
async fn cpu_seconds(store: &Store) -> anyhow::Result<(f64, f64)> {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(store.pg())
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users: usize = env("USERS", "100000").parse()?;
    let admin = Store::connect(&format!("{PG}/postgres"), 1, false).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .execute(admin.pg())
    .await?;

    let settings = support::planning_settings(DB, &[])?;

    let store = Store::connect(
        &settings
            .servers()
            .expect("on PostgreSQL and Redis")
            .database_url,
        8,
        true,
    )
    .await?;
    store.migrate().await?;
    let now: DateTime<Utc> = Utc::now();
    let started = Instant::now();
    let seeded = herald::seed::seed(
        &herald::source::demo::Demo::connect(store.url()).await?,
        users,
        1,
        now,
    )
    .await?;
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
    let only = std::env::var("ONLY").ok();
    let planned =
        |s: &&herald::config::ScheduleSettings| only.as_ref().is_none_or(|o| *o == s.name);
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
            .execute(store.pg())
            .await?;
        // A kind relative to each task's time has no fires of its own to time here.
        let Some(cron) = &schedule.cron else {
            continue;
        };
        let fires = herald::schedule::occurrences::next(cron, chrono_tz::UTC, now, 2);
        let span = fires[1].at - fires[0].at;
        // Planned at once, every fire of the period counts as on time.
        let mut schedule = schedule.clone();
        schedule.catch_up = (span + chrono::Duration::days(1)).to_std()?;
        sqlx::query("INSERT INTO schedule_watermarks (schedule, planned_up_to) VALUES ($1, $2) ON CONFLICT (schedule) DO UPDATE SET planned_up_to = $2")
            .bind(name)
            .bind(now - span)
            .execute(store.pg())
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

    store.pg().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .execute(admin.pg())
    .await?;
    println!(
        "# peak RSS of the bench process itself (seeding and planning): {:.1} MB",
        rss_mb("VmHWM:")
    );
    Ok(())
}
