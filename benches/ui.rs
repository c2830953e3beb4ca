//! The dashboard over many deliveries, measured: seeds DELIVERIES (100,000) deliveries spread over
//! the last day into a database of its own, serves Herald's HTTP routes (no workers, so nothing
//! is sent), logs in, and times each page a few times. Prints one `key=value` line per request.
//!
//! ```sh
//! cargo bench --bench ui
//! DELIVERIES=1000000 RUNS=3 cargo bench --bench ui
//! KEEP_DB=1 RUNS=1 cargo bench --bench ui   # keeps herald_bench_ui to EXPLAIN the queries
//! ```
//!
//! It uses its own database (`herald_bench_ui`, dropped first and at the end unless KEEP_DB=1) and a queue name of
//! its own in Redis database 0 (its keys deleted at the end).

use std::time::Instant;

use herald::{config::Settings, queue, startup::Application, store::Store};

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const DB: &str = "herald_bench_ui";
const REDIS: &str = "redis://127.0.0.1:6379/0";
const QUEUE: &str = "herald-bench-ui";
const TOKEN: &str = "bench-token-0123456789";

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

async fn drop_database() -> anyhow::Result<()> {
    let admin = Store::connect(&format!("{PG}/postgres"), 1, false).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .execute(admin.pg())
    .await?;
    admin.pg().close().await;
    Ok(())
}

/// `n` deliveries to 10,000 users over the last 24 hours: 85 % sent, 8 % failed (each with its
/// attempts), 4 % queued (a quarter of them retrying, a quarter due in the last 10 minutes and
/// already pushed to Redis, the rest due in an hour), 1 % sending, 2 % skipped; four kinds, two
/// providers, fires on the hour.
async fn seed(store: &Store, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (kind, user_id, dedup_key, status, payload, recipient, attempts,
                                 last_error, provider, planned_for, due_at, dispatched_at, sent_at,
                                 updated_at)
         SELECT kind, user_id, kind || ':' || user_id || ':' || i, status, '{}'::json,
                'user' || user_id || '@example' || (user_id % 50) || '.com',
                CASE status WHEN 'failed' THEN 4 WHEN 'queued' THEN (i % 4 = 0)::int ELSE 1 END,
                CASE status WHEN 'failed' THEN '550 5.1.1 no such user' END,
                CASE WHEN status IN ('sent', 'failed') THEN (ARRAY['smtp', 'resend'])[1 + i % 2] END,
                date_trunc('hour', at),
                CASE WHEN status = 'queued' AND i % 4 = 1 THEN now() - (i % 600) * interval '1 second'
                     WHEN status = 'queued' THEN now() + interval '1 hour' ELSE at END,
                CASE WHEN status = 'queued' AND i % 4 = 1 THEN now() END,
                CASE status WHEN 'sent' THEN at END, at
         FROM (
             SELECT i, (ARRAY['task_reminders', 'overdue_summary', 'weekly_report', 'focus_streak'])[1 + i % 4] AS kind,
                    1 + i % 10000 AS user_id,
                    now() - (i::float8 / $1) * interval '24 hours' AS at,
                    CASE WHEN i % 100 < 85 THEN 'sent' WHEN i % 100 < 93 THEN 'failed'
                         WHEN i % 100 < 97 THEN 'queued' WHEN i % 100 < 98 THEN 'sending'
                         ELSE 'skipped' END AS status
             FROM generate_series(1, $1) i
         ) s",
    )
    .bind(n)
    .execute(store.pg())
    .await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, provider, outcome, code, error)
         SELECT d.id, a, d.updated_at, COALESCE(d.provider, 'smtp'),
                CASE WHEN d.status = 'sent' THEN 'sent'
                     WHEN a < d.attempts THEN 'transient' ELSE 'permanent' END,
                CASE WHEN d.status = 'sent' THEN 250 WHEN a < d.attempts THEN 451 ELSE 550 END,
                CASE WHEN d.status <> 'sent' THEN 'no such user' END
         FROM deliveries d, generate_series(1, d.attempts) a
         WHERE d.status IN ('sent', 'failed')",
    )
    .execute(store.pg())
    .await?;
    sqlx::query("ANALYZE").execute(store.pg()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: i64 = env("DELIVERIES", "100000").parse()?;
    let runs: usize = env("RUNS", "5").parse()?;
    drop_database().await?;
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", format!("{PG}/{DB}")),
        ("REDIS_URL", REDIS.to_owned()),
        ("HERALD_API_TOKEN", TOKEN.to_owned()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("HERALD__QUEUE__NAME", QUEUE.to_owned()),
        ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
        ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load_from(&herald::kinds::defaults(), None, &vars)?;
    let app = Application::build(settings).await?;
    let state = app.state().clone();

    let t = Instant::now();
    seed(&state.store, n).await?;
    println!(
        "bench=ui phase=seed deliveries={n} seconds={:.2}",
        t.elapsed().as_secs_f64()
    );

    // Only the HTTP routes: no dispatcher and no workers, so the seeded rows stay as they are.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = herald::http::app(state.clone(), herald::ui::router(state.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("the login set no cookie ({})", login.status()))?
        .to_owned();

    for (page, path) in [
        ("overview", "/ui"),
        ("schedules", "/ui/schedules"),
        ("failed", "/ui/failed"),
        (
            "failed_filtered",
            "/ui/failed?class=permanent&domain=example7.com&since=12h",
        ),
        ("search", "/ui/deliveries?q=user42%40example42.com"),
        ("queued", "/ui/deliveries?status=queued"),
        ("sending", "/ui/deliveries?status=sending"),
        ("retrying", "/ui/deliveries?status=retrying"),
    ] {
        for run in 0..=runs {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = r.status();
            let bytes = r.bytes().await?.len();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(status.is_success(), "{path} answered {status}");
            // Run 0 warms the connection pool and the caches.
            let label = if run == 0 {
                "warmup".to_owned()
            } else {
                run.to_string()
            };
            println!(
                "bench=ui page={page} deliveries={n} run={label} status={} bytes={bytes} ms={ms:.1}",
                status.as_u16()
            );
        }
    }

    server.abort();
    state.store.pg().close().await;
    drop(app);
    if env("KEEP_DB", "0") != "1" {
        drop_database().await?;
    }
    let mut conn = queue::connect(REDIS).await?;
    queue::delete_queue_keys(&mut conn, QUEUE).await?;
    Ok(())
}
