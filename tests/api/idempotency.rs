//! One email per user per tick: when a tick is triggered twice (in both homes), and when two
//! Herald processes both fire it (and both are asked for the same manual trigger, a test send of
//! its own; on the servers, where several processes run).

use std::{collections::HashMap, process::Stdio, time::Duration};

use chrono::Utc;
use serde_json::json;

use crate::{helpers::*, servers::free_port};

async fn the_same_tick_triggered_twice_sends_one_email_per_user(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = home.spawn(&smtp).await;
    for i in 0..5 {
        app.add_user(
            &format!("u{i}@example.com"),
            "Europe/Paris",
            &[("Late", at("2026-11-20T10:00:00Z"), None)],
        )
        .await;
    }
    let tick = json!({ "at": at("2026-11-23T06:00:00Z") });
    let (_, first) = app.trigger("overdue_summary", tick.clone()).await;
    let (_, second) = app.trigger("overdue_summary", tick).await;
    assert_eq!(
        (first["planned"].as_i64(), first["already_planned"].as_i64()),
        (Some(5), Some(0)),
        "{first}"
    );
    assert_eq!(
        (
            second["planned"].as_i64(),
            second["already_planned"].as_i64()
        ),
        (Some(0), Some(5)),
        "{second}"
    );
    // Later the same day is the same tick date: still nothing new.
    let (_, third) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at("2026-11-23T18:00:00Z") }),
        )
        .await;
    assert_eq!(third["planned"], 0, "{third}");

    app.wait_for_status("sent", 5, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.count(), 5);
    drop(smtp);
    app.finish().await;
}

in_both_homes!(the_same_tick_triggered_twice_sends_one_email_per_user);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_send_each_user_one_scheduled_and_one_manual_email_and_stop_on_sigterm() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    // Both processes fire the reminder schedule every second: many ticks, one date.
    env.set("HERALD__SCHEDULES__TASK_REMINDERS__ENABLED", "true");
    env.set("HERALD__SCHEDULES__TASK_REMINDERS__CRON", "* * * * * *");
    let out = herald_cmd(&env).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _guard = EnvGuard(env.clone());
    let store = herald::store::Store::connect(
        &env.settings()
            .servers()
            .expect("tests run on PostgreSQL and Redis")
            .database_url,
        2,
        false,
    )
    .await
    .unwrap();
    // Due in 30 hours is tomorrow in UTC for most of the day; plan as UTC users at a fixed tick
    // through HTTP as well, so the test does not depend on the wall clock's hour.
    let now = Utc::now();
    let due = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    let users = 40;
    for i in 0..users {
        add_user(
            &store,
            &format!("p{i}@example.com"),
            "UTC",
            &[("Ship it", due, None)],
        )
        .await;
    }

    let mut processes = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut cmd = herald_cmd(&env);
        cmd.env("HERALD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .arg("run");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        processes.push(Daemon(cmd.spawn().unwrap()));
        addresses.push(format!("http://127.0.0.1:{port}"));
    }
    let http = reqwest::Client::new();
    for a in &addresses {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{a}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{a} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The same manual trigger through both processes' HTTP API, at the same time, on top of the
    // cron ticks: one test send per user, and it takes nothing from the scheduled email.
    let tick = json!({ "at": now });
    let triggers = addresses.iter().map(|a| {
        http.post(format!("{a}/api/schedules/task_reminders/trigger"))
            .bearer_auth(TOKEN)
            .json(&tick)
            .send()
    });
    for r in futures::future::join_all(triggers).await {
        assert_eq!(r.unwrap().status(), 202);
    }
    smtp.wait_for(2 * users, Duration::from_secs(60)).await;
    // Let a few more cron ticks fire in both processes.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut per_user: HashMap<String, usize> = HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    assert_eq!(per_user.len(), users);
    assert!(per_user.values().all(|&n| n == 2), "{per_user:?}");
    // One manual and one scheduled delivery per user.
    let keys: Vec<String> = sqlx::query_scalar("SELECT dedup_key FROM deliveries")
        .fetch_all(store.pg())
        .await
        .unwrap();
    let manual = keys.iter().filter(|k| k.starts_with("manual:")).count();
    assert_eq!((manual, keys.len()), (users, 2 * users), "{keys:?}");

    for p in processes {
        let status = tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
        assert!(
            status.success(),
            "herald exited with {status} after SIGTERM"
        );
    }
    store.pg().close().await;
    drop(smtp);
}
