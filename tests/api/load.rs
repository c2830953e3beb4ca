//! A tick far above apalis-redis's ~8,000-due-jobs limit is delivered in full.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_for_20000_users_is_delivered_in_full_with_every_worker_alive() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__QUEUE__CONCURRENCY", "50");
    env.set("HERALD__MAIL__POOL_SIZE", "20");
    // 20,000 emails make 200 jobs of 100: a high water of 20 jobs is one the fire must reach,
    // so the bound below is one a dispatcher that ignores it would break.
    env.set("HERALD__QUEUE__HIGH_WATER", "20");
    let app = spawn_with(env).await;
    let users = 20_000;
    app.add_late_users("bulk", users).await;

    let (status, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at("2026-11-23T07:00:00Z") }),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(report["planned"], users, "planned");
    // Redis never holds more jobs than the high-water mark, plus one chunk in flight (500
    // deliveries, 5 jobs).
    let mut max_depth = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while app.count_status("sent").await < users as i64 {
        max_depth = max_depth.max(app.queue.depth().await.unwrap());
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} sent",
            app.count_status("sent").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(max_depth <= 20 + 5, "queue depth reached {max_depth} jobs");
    assert!(
        max_depth >= 10,
        "the queue never came near its high water ({max_depth} jobs at most): this run did not test it"
    );
    smtp.wait_for(users, Duration::from_secs(30)).await;
    // Every user got exactly one email: a copy is counted, not folded away.
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    let copies: usize = per_user.values().map(|&n| n - 1).sum();
    let missing: Vec<_> = (0..users)
        .map(|i| format!("bulk{i}@example.com"))
        .filter(|to| !per_user.contains_key(to))
        .collect();
    assert_eq!(
        (missing.len(), copies, per_user.len()),
        (0, 0, users),
        "missing {missing:?}"
    );
    assert_eq!(app.count_status("failed").await, 0);
    // Every worker is still alive: it kept its heartbeat, and the app is ready.
    assert!(
        app.queue
            .live_workers(Duration::from_secs(5))
            .await
            .unwrap()
            >= 1
    );
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    drop(smtp);
    app.finish().await;
}
