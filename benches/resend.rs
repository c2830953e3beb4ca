//! Emails per second through a local Resend stand-in (`tests/support/resend_stub.rs`), with
//! batching on (`/emails/batch`, 100 a request) and off (`/emails`, one a request). Prints one
//! `key=value` line per run; it asserts nothing.
//!
//! ```sh
//! cargo bench --bench resend                     # 5,000 emails, rate limit 1,000 requests/s
//! N=2000 RATE=2 cargo bench --bench resend       # at Resend's default limit
//! ```
//!
//! The stand-in answers at once, so the figures are Herald's own cost per email (PostgreSQL,
//! Redis, rendering, HTTP), not Resend's. It uses its own database (`herald_bench_resend`, dropped
//! first) and Redis database 14, which belongs to the benchmarks.

#[path = "../tests/support/resend_stub.rs"]
mod resend_stub;

use std::time::{Duration, Instant};

use chrono::Utc;
use herald::{
    config::Settings,
    schedule::{PlanOptions, plan},
    source::demo::{Demo, NewTask, NewUser},
    startup::Application,
    store::Store,
};

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const DB: &str = "herald_bench_resend";
const REDIS: &str = "redis://127.0.0.1:6379/0";
/// The bench's own queue: set up and cleaned up by its key prefix, nothing else in the database.
const QUEUE: &str = "herald-bench-resend";

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = env("N", "5000").parse()?;
    let rate = env("RATE", "1000");
    for batch_size in [100, 1] {
        run(n, batch_size, &rate).await?;
    }
    Ok(())
}

async fn run(n: usize, batch_size: usize, rate: &str) -> anyhow::Result<()> {
    let admin = Store::connect(&format!("{PG}/postgres"), 1, false).await?;
    let drop_db = format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(drop_db.clone()))
        .execute(admin.pg())
        .await?;
    let mut conn = redis::Client::open(REDIS)?
        .get_multiplexed_async_connection()
        .await?;
    herald::queue::delete_queue_keys(&mut conn, QUEUE).await?;

    let stub = resend_stub::ResendStub::start().await;
    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", format!("{PG}/{DB}")),
        ("RESEND_API_KEY", "re_bench".into()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".into()),
        ("REDIS_URL", REDIS.to_owned()),
        ("HERALD__MAIL__PROVIDERS", r#"["resend"]"#.into()),
        ("HERALD__MAIL__RESEND__BASE_URL", stub.url.clone()),
        ("HERALD__MAIL__RESEND__BATCH_SIZE", batch_size.to_string()),
        ("HERALD__MAIL__RESEND__REQUESTS_PER_SECOND", rate.to_owned()),
        ("HERALD__QUEUE__NAME", QUEUE.into()),
        ("HERALD__QUEUE__CONCURRENCY", env("CONC", "32")),
        (
            "HERALD__TEMPLATES__DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
        ),
        ("HERALD__SCHEDULES__ENABLED", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load_from(&herald::kinds::defaults(), None, &vars)?;

    // n users with one overdue task each: the overdue summary plans one email per user.
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
    let now = Utc::now();
    let users: Vec<_> = (0..n)
        .map(|i| {
            NewUser::new(
                &format!("bench{i}@example.com"),
                &format!("User {i}"),
                "UTC",
            )
        })
        .collect();
    let demo = Demo::connect(store.url()).await?;
    demo.install().await?;
    let mut ids = Vec::with_capacity(n);
    for chunk in users.chunks(5000) {
        ids.extend(demo.insert_users(chunk).await?);
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|owner_id| NewTask {
            owner_id: owner_id.clone(),
            title: "Late".into(),
            due_at: Some(now - chrono::Duration::days(2)),
            completed_at: None,
        })
        .collect();
    for chunk in tasks.chunks(5000) {
        demo.insert_tasks(chunk).await?;
    }
    let schedule = settings
        .schedule("overdue_summary")
        .expect("built-in schedule");
    let report = plan(
        &store,
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

    let app = Application::build(settings.clone()).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE status IN ('sent', 'failed')",
        )
        .fetch_one(store.pg())
        .await?;
        if done >= report.planned as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'failed'")
        .fetch_one(store.pg())
        .await?;
    let _ = tx.send(());
    handle.await??;
    println!(
        "peer=herald phase=email transport=resend-stub batch_size={batch_size} requests_per_second={rate} n={} requests={} failed={failed} seconds={secs:.2} emails_per_s={:.0}",
        report.planned,
        stub.requests().len(),
        report.planned as f64 / secs
    );
    store.pg().close().await;
    sqlx::query(sqlx::AssertSqlSafe(drop_db))
        .execute(admin.pg())
        .await?;
    herald::queue::delete_queue_keys(&mut conn, QUEUE).await?;
    Ok(())
}
