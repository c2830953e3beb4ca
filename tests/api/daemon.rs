//! The daemon's steady state: Redis back at its baseline after every email, a dead worker's big
//! inflight set drained in chunks, a background part that panics restarted.

use std::time::Duration;

use herald::health::{Dependency, PartState};
use serde_json::json;

use crate::helpers::*;

/// The queue's keys whose size is not zero, with their sizes, without the marker.
async fn redis_state(app: &TestApp) -> Vec<(String, usize)> {
    app.queue.keys().await.unwrap()
}

/// Entries in keys that hold jobs: data, meta, inflight, done, dead (not the dead-letter list,
/// which keeps undecodable jobs on purpose).
fn job_entries(keys: &[(String, usize)]) -> usize {
    keys.iter()
        .filter(|(k, _)| !k.ends_with(":dead-letter"))
        .filter(|(k, _)| {
            [
                ":data",
                ":meta:",
                ":inflight:",
                ":done",
                ":dead",
                ":active",
                ":scheduled",
            ]
            .iter()
            .any(|part| k.contains(part))
        })
        .map(|(k, n)| if k.contains(":meta:") { 1 } else { *n })
        .sum()
}

/// Counts messages per recipient: every recipient exactly once.
fn assert_each_once(mail: &[Received], n: usize) {
    let mut per: std::collections::HashMap<&str, usize> = Default::default();
    for m in mail {
        *per.entry(m.to()).or_default() += 1;
    }
    let copies: usize = per.values().map(|c| c - 1).sum();
    assert_eq!(copies, 0, "{copies} duplicate messages");
    assert_eq!(per.len(), n, "recipients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fire_redis_holds_no_job_of_it() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let n = 400;
    app.add_late_users("late", n).await;
    let (status, report) = app
        .trigger("overdue_summary", json!({ "at": at(TICK) }))
        .await;
    assert_eq!(status, 202, "{report}");
    app.wait_for_status("sent", n as i64, Duration::from_secs(120))
        .await;
    let mail = smtp.wait_for(n, Duration::from_secs(30)).await;
    assert_each_once(&mail, n);
    // The ack follows the commit of the outcome: give the last few a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut keys = redis_state(&app).await;
    while job_entries(&keys) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        keys = redis_state(&app).await;
    }
    assert_eq!(job_entries(&keys), 0, "jobs left in Redis: {keys:?}");
    // What is left is the worker's registration, the marker and the registry: a constant.
    assert!(keys.len() <= 4, "{keys:?}");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_inflight_set_above_the_unpack_limit_is_drained_and_sent_once() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let _cleanup = EnvGuard(env.clone());
    // Plan with the app, then stop it: the deliveries wait in PostgreSQL.
    let mut app = spawn_with(env.clone()).await;
    let n = 8_500;
    app.add_late_users("late", n).await;
    let store = app.store.clone();
    app.stop().await.unwrap();
    app.owns_env = false;
    drop(app);
    let settings = env.settings();
    let schedule = settings.schedule("overdue_summary").unwrap();
    let report = herald::schedule::plan(
        &store,
        schedule,
        &herald::schedule::PlanOptions {
            at: at(TICK),
            user_id: None,
            dry_run: false,
            ids: false,
        },
        &herald::clock::Clock::System,
        &settings.retention,
    )
    .await
    .unwrap();
    assert_eq!(report.planned, n);

    // The state an older Herald left behind when it died mid-fire: every delivery dispatched
    // and sitting in the inflight set of a worker whose heartbeat stopped an hour ago.
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE deliveries SET dispatched_at = now() WHERE status = 'queued' RETURNING id",
    )
    .fetch_all(store.pg())
    .await
    .unwrap();
    let q = &settings.queue.name;
    let dead = "herald-olderhost-1-dead-0";
    let mut conn = herald::queue::connect(&redis_url()).await.unwrap();
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let task = format!("task-{id}");
            pipe.hset(
                format!("{q}:data"),
                &task,
                json!({ "delivery_id": id }).to_string(),
            )
            .ignore()
            .sadd(format!("{q}:inflight:{dead}"), &task)
            .ignore()
            .hset(format!("{q}:meta:{task}"), "status", "Running")
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    redis::pipe()
        .zadd(
            format!("{q}:workers"),
            dead,
            chrono::Utc::now().timestamp() - 3600,
        )
        .hset(format!("{q}:workers:metadata:{dead}"), "service", "herald")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // A new process starts on that state.
    let app = spawn_with(env).await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(300))
        .await;
    let mail = smtp.wait_for(n, Duration::from_secs(60)).await;
    assert_each_once(&mail, n);
    let keys = redis_state(&app).await;
    assert!(
        keys.iter().all(|(k, _)| !k.contains(dead)),
        "the dead worker is still registered: {keys:?}"
    );
    // No worker of the new process ever failed: Redis was never reported down.
    assert_eq!(app.state.health.is_down(Dependency::Queue), None);
    assert_eq!(app.count_status("failed").await, 0);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_part_that_panics_is_restarted_and_readiness_says_so_meanwhile() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    app.add_late_user("ada@example.com").await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);

    app.state.faults.panic("dispatcher");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = app.get("/readyz").await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["parts"]["dispatcher"]["state"], "restarting", "{body}");
    assert!(
        body["parts"]["dispatcher"]["why"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{body}"
    );

    // The supervisor restarts it; readiness comes back and the dispatcher dispatches.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.state.health.parts()["dispatcher"] != PartState::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dispatcher was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    app.trigger_overdue().await;
    let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_each_once(&mail, 1);
    drop(smtp);
    app.finish().await;
}
