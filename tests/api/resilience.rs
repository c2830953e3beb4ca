//! Nothing is lost when Redis dies: readiness says so, and once Redis is back every planned email
//! is delivered, even though the restarted Redis remembers nothing.

use std::{process::Stdio, time::Duration};

use serde_json::json;

use crate::{
    helpers::*,
    servers::{PrivateRedis, free_port},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_readiness_fails_and_no_email_is_lost() {
    skip_without_servers!();
    skip_without_programs!("redis-server");
    // Killed and started again on the same port, which no other test's server can take.
    let mut redis = tokio::task::block_in_place(PrivateRedis::start);
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", &redis.url());
    // Rows pushed to a Redis that then lost them are pushed again after this long.
    env.set("HERALD__QUEUE__REDISPATCH_AFTER", "10s");
    let app = spawn_with(env).await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);

    redis.stop();
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["postgres"], "ok");
    assert!(body["redis"].as_str().unwrap() != "ok", "{body}");
    // The operator's overview answers with what PostgreSQL knows and says what is unreachable.
    let (status, stats) = app.get("/api/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["deliveries"].is_object(), "{stats}");
    assert!(stats["queue"]["depth"].is_null(), "{stats}");
    assert!(stats["unreachable"]["redis"].is_string(), "{stats}");
    assert!(stats["unreachable"].get("postgres").is_none(), "{stats}");

    // Planning goes on without Redis: PostgreSQL is the record.
    for i in 0..20 {
        app.add_user(
            &format!("r{i}@example.com"),
            "UTC",
            &[("Late", at("2026-11-20T10:00:00Z"), None)],
        )
        .await;
    }
    let (status, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at("2026-11-23T07:00:00Z") }),
        )
        .await;
    assert_eq!(
        (status, report["planned"].as_i64()),
        (202, Some(20)),
        "{report}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.count(), 0);

    // Redis comes back empty; every email still arrives, once.
    tokio::task::block_in_place(|| redis.resume());
    smtp.wait_for(20, Duration::from_secs(120)).await;
    app.wait_for_status("sent", 20, Duration::from_secs(30))
        .await;
    // Counted after every delivery is recorded, so a late copy is seen too.
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    for i in 0..20 {
        let to = format!("r{i}@example.com");
        assert_eq!(per_user.get(&to), Some(&1), "{to}: {per_user:?}");
    }
    assert_eq!(per_user.len(), 20, "{per_user:?}");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    drop(smtp);
    app.finish().await;
}

/// The test above loses Redis before planning; this one loses it while jobs wait in it, not yet
/// fetched: only the marker key (missing after the restart) brings them back within the bound,
/// since `queue.redispatch_after` is ten minutes here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_waiting_in_redis_when_it_dies_are_pushed_again_at_once_from_the_marker() {
    skip_without_servers!();
    skip_without_programs!("redis-server");
    let mut redis = tokio::task::block_in_place(PrivateRedis::start);
    let smtp = SmtpServer::start().await;
    // One email at a time, each held half a second at the server: the worker fetches its 64
    // jobs and the rest wait in Redis.
    smtp.set_delay(Duration::from_millis(500));
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", &redis.url());
    env.set("HERALD__QUEUE__CONCURRENCY", "1");
    env.set("HERALD__MAIL__POOL_SIZE", "1");
    env.set("HERALD__QUEUE__REDISPATCH_AFTER", "10m");
    let app = spawn_with(env).await;
    let n = 100;
    let users = app.add_late_users("w", n).await;
    // One trigger per user: each email is a job of its own (or a few together).
    app.trigger_overdue_each(&users).await;
    let waiting = app.queue.depth().await.unwrap();
    assert!(
        waiting > 0,
        "no job waited in Redis when it died: this run did not test the refill"
    );

    tokio::task::block_in_place(|| {
        redis.stop();
        redis.resume();
    });
    smtp.set_delay(Duration::ZERO);
    smtp.wait_for(n, Duration::from_secs(120)).await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(30))
        .await;
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    let copies: usize = per_user.values().map(|&c| c - 1).sum();
    assert_eq!(
        (per_user.len(), copies),
        (n, 0),
        "{waiting} jobs were waiting in Redis when it died"
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_herald_process_is_killed_mid_tick_another_delivers_everything() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    // Slow enough that the kill lands mid-tick: 150 emails at 25 per second.
    env.set("HERALD__MAIL__SMTP__MESSAGES_PER_SECOND", "25");
    // A dead process's claims and dispatches come back quickly (a lease must outlive a send:
    // mail.timeout plus the 2 s a worker may wait for a provider).
    env.set("HERALD__MAIL__TIMEOUT", "2s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "500ms");
    env.set("HERALD__QUEUE__LEASE", "6s");
    env.set("HERALD__QUEUE__REDISPATCH_AFTER", "10s");
    herald_ok(&env, &["migrate"]);
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
    let users = 150;
    for i in 0..users {
        add_user(
            &store,
            &format!("k{i}@example.com"),
            "UTC",
            &[("Late", at(LATE), None)],
        )
        .await;
    }

    let spawn = |env: &Env| {
        let port = free_port();
        let mut cmd = herald_cmd(env);
        cmd.env("HERALD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .arg("run");
        (
            Daemon(
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            ),
            format!("http://127.0.0.1:{port}"),
        )
    };
    let (mut first, address) = spawn(&env);
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let report: serde_json::Value = loop {
        let r = http
            .post(format!("{address}/api/schedules/overdue_summary/trigger"))
            .bearer_auth(TOKEN)
            .json(&json!({ "at": at(TICK) }))
            .send()
            .await;
        if let Ok(r) = r {
            break r.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["planned"], users, "{report}");

    // Kill it (no chance to clean up) once some, but not all, emails are out.
    smtp.wait_for(20, Duration::from_secs(60)).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let sent_before = smtp.count();
    // What the dead process held: rows claimed and not recorded. Only these may go twice.
    let in_flight: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT recipient FROM deliveries WHERE status = 'sending'")
            .fetch_all(store.pg())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(
        sent_before < users,
        "the kill came too late to test anything"
    );

    // Another process picks up everything that was queued, dispatched or being sent.
    let (second, _) = spawn(&env);
    // Done when every delivery is recorded as sent (the SMTP count alone would include copies).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            .fetch_one(store.pg())
            .await
            .unwrap();
        if sent == users as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {sent} of {users} sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    smtp.wait_for(users, Duration::from_secs(10)).await;
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    for i in 0..users {
        let to = format!("k{i}@example.com");
        assert!(per_user.contains_key(&to), "{to} got no email");
    }
    assert_eq!(per_user.len(), users, "only the planned users got an email");
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'failed'")
        .fetch_one(store.pg())
        .await
        .unwrap();
    assert_eq!(failed, 0);
    // Only emails claimed and not yet recorded at the kill can go out twice (sent, then killed
    // before recording): each copy is of a row that was `sending` when the process died, one
    // copy at most each (every message beyond a user's first counts, so a third is not hidden).
    let copies: usize = per_user.values().map(|&n| n - 1).sum();
    eprintln!(
        "killed after {sent_before} of {users} emails; {copies} copies (bound: {} rows in flight)",
        in_flight.len()
    );
    for (to, n) in &per_user {
        assert!(
            *n == 1 || (*n == 2 && in_flight.contains(to)),
            "{to} got {n} emails; in flight at the kill: {}",
            in_flight.contains(to)
        );
    }

    assert!(second.stop().success());
    store.pg().close().await;
    drop(smtp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_claims_are_given_back_at_once_not_after_their_lease() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    // A lease far longer than the test waits: only giving the dead worker's claims back can send
    // its rows in time.
    env.set("HERALD__QUEUE__LEASE", "10m");
    env.set("HERALD__MAIL__TIMEOUT", "1m");
    herald_ok(&env, &["migrate"]);
    let _guard = EnvGuard(env.clone());
    let settings = env.settings();
    let store = herald::store::Store::connect(
        &settings
            .servers()
            .expect("on PostgreSQL and Redis")
            .database_url,
        2,
        false,
    )
    .await
    .unwrap();
    let n = 12;
    for i in 0..n {
        add_user(
            &store,
            &format!("k{i}@example.com"),
            "UTC",
            &[("Late", at(LATE), None)],
        )
        .await;
    }
    let report = herald::schedule::plan(
        &store,
        settings.schedule("overdue_summary").unwrap(),
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

    // The server holds every message it is offered (no `250` for ten minutes), so the first
    // process claims every row and is still sending them when it is killed.
    smtp.set_delay(Duration::from_secs(600));
    let mut cmd = herald_cmd(&env);
    cmd.env("HERALD_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "error")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut first = Daemon(cmd.spawn().unwrap());
    // Waits (bounded only to stop a hung test) until every row is claimed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sending'")
                .fetch_one(store.pg())
                .await
                .unwrap();
        if sending == n as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {sending} of {n} rows claimed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL: the claims stay `sending`, each with a lease of ten minutes.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    smtp.set_delay(Duration::ZERO);

    // The next process on this host knows the first one's workers are dead as it starts: it
    // gives back their fetched jobs and the rows they claimed. Waits for every row to be
    // recorded sent, bounded by a fifth of the lease (a hung test fails, not a slow one).
    let app = spawn_with(env.clone()).await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(120))
        .await;
    // Counted where they arrive: each email once. The killed process's sends were never
    // accepted (the server held them past the end of the test), so any copy here would be the
    // second process sending a row twice; the README's bound (`queue.concurrency`) is the most
    // the kill itself may add.
    let counts = smtp.counts();
    assert_eq!(counts.per_delivery.len(), n, "{:?}", counts.per_delivery);
    let copies = counts.duplicates() as usize;
    assert!(
        copies <= settings.queue.concurrency,
        "{copies} copies: {:?}",
        counts.per_delivery
    );
    assert_eq!(copies, 0, "{:?}", counts.per_delivery);
    // Given back like an expired lease: the attempt of the lost send stays counted, the
    // second claim adds its own.
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM deliveries ORDER BY id")
        .fetch_all(store.pg())
        .await
        .unwrap();
    assert!(attempts.iter().all(|&a| a == 2), "{attempts:?}");
    store.pg().close().await;
    app.finish().await;
    drop(smtp);
}

/// Issue 19, items 11 and 6: Redis goes away while a job holds 12 claimed rows, two of them at
/// the SMTP server (held there for a few seconds) and ten waiting behind them for the rate
/// limit. apalis stops the worker and drops its handler; the job goes on in its own task. The
/// two sends finish and are recorded (no copy), and the ten, which can no longer ask the gate,
/// go back untried and cost no attempt: no row is left `sending` while Redis is away, and once
/// it is back every email arrives once, each with one attempt. The lease is ten minutes, so a
/// claim left to its lease fails the test at its bounded waits, never hangs it.
/// Guarded: the code under test could block the runtime, and with it any deadline of the test.
#[test]
fn claims_dropped_when_redis_goes_away_come_back_at_once_and_cost_no_attempt() {
    skip_without_servers!();
    skip_without_programs!("redis-server");
    let _watchdog = Watchdog::new(
        "claims_dropped_when_redis_goes_away_come_back_at_once_and_cost_no_attempt",
        Duration::from_secs(180),
    );
    guarded_runtime()
        .block_on(claims_dropped_when_redis_goes_away_come_back_at_once_and_cost_no_attempt_run());
}

async fn claims_dropped_when_redis_goes_away_come_back_at_once_and_cost_no_attempt_run() {
    let mut redis = tokio::task::block_in_place(PrivateRedis::start);
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", &redis.url());
    env.set("HERALD__QUEUE__LEASE", "10m");
    env.set("HERALD__MAIL__TIMEOUT", "1m");
    // Two emails a second: two go to the server, the other ten wait in the job for the gate.
    env.set("HERALD__MAIL__SMTP__MESSAGES_PER_SECOND", "2");
    let app = spawn_with(env.clone()).await;
    let n = 12;
    app.add_late_users("q", n).await;
    // The server holds the first messages for 4 s before its `250`.
    smtp.set_delay(Duration::from_secs(4));
    app.trigger_overdue().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.count_status("sending").await < n as i64 || smtp.counts().offered.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every row was claimed with two of them at the SMTP server within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smtp.set_delay(Duration::ZERO);

    // Redis goes away with two sends under way.
    redis.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sending = app.count_status("sending").await;
        if sending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sending} rows still `sending` 30 s after Redis went away (their claims wait for \
             the 10-minute lease instead of coming back)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sends that were under way (at least the two held) are recorded, not thrown away.
    let offered = smtp.counts().offered.len() as i64;
    assert!(offered >= 2, "{offered}");
    assert_eq!(
        app.count_status("sent").await,
        offered,
        "of the {offered} emails at the SMTP server when Redis went away, these many were recorded"
    );
    tokio::task::block_in_place(|| redis.resume());
    app.wait_for_status("sent", n as i64, Duration::from_secs(60))
        .await;
    // A copy would be late: give it time to arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Counted where they arrive: each email once.
    let counts = smtp.counts();
    assert_eq!(counts.per_delivery.len(), n, "{:?}", counts.per_delivery);
    assert_eq!(counts.duplicates(), 0, "copies: {:?}", counts.per_delivery);
    // The claims given up because the queue went away cost nothing: one attempt (the send that
    // went out), one attempt row.
    let rows: Vec<(i64, i32, i64)> = sqlx::query_as(
        "SELECT d.id, d.attempts, (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id)
         FROM deliveries d ORDER BY d.id",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    assert!(
        rows.iter().all(|r| r.1 == 1),
        "(id, attempts, attempt rows): {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.2 == 1),
        "(id, attempts, attempt rows): {rows:?}"
    );
    drop(smtp);
    app.finish().await;
}
