//! Resend through a local stand-in that speaks its API: idempotency keys, rate limits shared by
//! every worker of every process, pauses for a wrong key, failover to SMTP, and batches.

use std::time::Duration;

use crate::helpers::*;
use crate::resend_stub::{Reply, ResendStub};

fn outcomes(attempts: &[herald::store::AttemptRow]) -> Vec<(&str, &str, Option<i32>)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str(), a.code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_and_a_retry_from_the_failed_set_carry_the_dedup_key() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[(
        "ida@example.com",
        &[
            Reply::Status(503, "service_unavailable"),
            Reply::Status(422, "validation_error"),
        ],
    )]);
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__QUEUE__RETRY_DELAYS", r#"["100ms", "100ms"]"#);
    let app = spawn_with(env).await;
    app.add_late_user("ida@example.com").await;
    let id = app.trigger_overdue().await[0];

    // 503 (transient, retried), then 422 (permanent): failed.
    app.wait_for_status("failed", 1, Duration::from_secs(30))
        .await;
    let out = herald_cmd(&app.env)
        .args(["failed", "retry", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stub.wait_for(1, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;

    let delivery = app.store.delivery(id).await.unwrap().unwrap();
    let requests = stub.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for r in &requests {
        assert_eq!(r.path, "/emails");
        assert_eq!(
            r.header("idempotency-key"),
            Some(delivery.dedup_key.as_str())
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {RESEND_KEY}").as_str())
        );
        assert_eq!(r.body["headers"]["X-Herald-Delivery"], delivery.dedup_key);
        // The user's name, quoted, as in an SMTP `To:`.
        assert_eq!(
            r.body["to"][0],
            "\"User ida@example.com\" <ida@example.com>"
        );
        assert_eq!(r.body["from"], "\"Herald\" <herald@example.com>");
        assert!(r.body["html"].as_str().unwrap().contains("Late"));
        assert!(r.body["text"].as_str().unwrap().contains("Late"));
    }
    assert_eq!(
        outcomes(&app.store.attempts(id).await.unwrap()),
        [
            ("resend", "transient", Some(503)),
            ("resend", "permanent", Some(422)),
            ("resend", "sent", Some(200)),
        ]
    );
    assert_eq!(delivery.provider.as_deref(), Some("resend"));
    assert!(
        delivery
            .provider_id
            .as_deref()
            .is_some_and(|p| !p.is_empty())
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_every_worker_and_costs_no_attempt() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[("slow@example.com", &[Reply::RateLimited(3)])]);
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    // One request a second: the 429's answer is back long before the next slot.
    env.set("HERALD__MAIL__RESEND__REQUESTS_PER_SECOND", "1");
    let app = spawn_with(env).await;
    for email in ["slow@example.com", "b@example.com", "c@example.com"] {
        app.add_late_user(email).await;
    }
    app.trigger_overdue().await;
    stub.wait_for(3, Duration::from_secs(60)).await;
    app.wait_for_status("sent", 3, Duration::from_secs(10))
        .await;

    let requests = stub.requests();
    let limited = requests.iter().find(|r| r.status == 429).expect("a 429");
    for r in requests.iter().filter(|r| r.at > limited.at) {
        assert!(
            r.at - limited.at >= Duration::from_secs(3),
            "a request came {:?} after retry-after: 3",
            r.at - limited.at
        );
    }
    let slow: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE recipient = 'slow@example.com'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();
    let attempts = app.store.attempts(slow).await.unwrap();
    assert_eq!(
        outcomes(&attempts),
        [
            ("resend", "rate_limited", Some(429)),
            ("resend", "sent", Some(200))
        ]
    );
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("rate_limit_exceeded")
    );
    // The wait used none of the delivery's attempts: only the send counts.
    assert_eq!(app.round_attempts(slow).await, 1);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_asking_for_30_days_pauses_resend_only_for_mail_max_pause() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // retry-after: 2592000, 30 days.
    stub.script(&[("month@example.com", &[Reply::RateLimited(2_592_000)])]);
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    env.set("HERALD__MAIL__MAX_PAUSE", "2s");
    let app = spawn_with(env).await;
    app.add_late_user("month@example.com").await;
    let id = app.trigger_overdue().await[0];

    // Sent once the pause, cut to 2 s, is over: not in 30 days.
    stub.wait_for(1, Duration::from_secs(60)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        outcomes(&app.store.attempts(id).await.unwrap()),
        [
            ("resend", "rate_limited", Some(429)),
            ("resend", "sent", Some(200))
        ]
    );
    assert_eq!(app.round_attempts(id).await, 1);
    assert_eq!(stub.requests().len(), 2);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_exceed_the_rate_in_any_second() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    env.set("HERALD__MAIL__RESEND__REQUESTS_PER_SECOND", "2");
    env.set("HERALD__QUEUE__CONCURRENCY", "4");
    let one = spawn_with(env.clone()).await;
    let two = spawn_with(env).await;
    let n = 16;
    let mut users = Vec::new();
    for i in 0..n {
        users.push(one.add_late_user(&format!("r{i}@example.com")).await);
    }
    // One job per email, and each process holds at most 4 emails (`queue.concurrency`) while
    // the limit lets 2 go per second: both processes must send for all 16 to go out.
    // Triggered through one process or the other in turn: each process's dispatcher wakes its
    // own worker, so both take jobs.
    for (i, user) in users.iter().enumerate() {
        let through = if i % 2 == 0 { &one } else { &two };
        through.trigger_overdue_each(&[*user]).await;
    }
    stub.wait_for(n, Duration::from_secs(60)).await;
    one.wait_for_status("sent", n as i64, Duration::from_secs(10))
        .await;
    let claims = one.claims_by_worker().await;
    assert!(
        claims.len() >= 2,
        "every email went through one worker: {claims:?}; this run did not test two processes"
    );

    let times: Vec<_> = stub.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), n);
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 2,
            "{in_window} requests within one second from request {i}"
        );
    }
    drop(smtp);
    two.finish().await;
    one.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_pauses_sending_without_failing_and_the_right_key_resumes() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.accept_key(Some("re_the_right_key"));
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    let app = spawn_with(env.clone()).await;
    for i in 0..3 {
        app.add_late_user(&format!("k{i}@example.com")).await;
    }
    app.trigger_overdue().await;

    // The first 401 pauses Resend for every worker: no flood of refused requests, none failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stub.requests().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request reached Resend"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = stub.requests();
    assert!(refused.iter().all(|r| r.status == 401), "{refused:?}");
    assert!(
        refused.len() <= 2,
        "{} requests while paused",
        refused.len()
    );
    assert_eq!(app.count_status("failed").await, 0);
    assert_eq!(app.count_status("queued").await, 3);

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let resend = ready["providers"]["resend"].as_str().unwrap();
    assert!(
        resend.contains("configuration") && resend.contains("RESEND_API_KEY"),
        "{ready}"
    );
    let check = herald_cmd(&app.env).arg("check").output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("FAIL  mail provider resend") && said.contains("RESEND_API_KEY"),
        "{said}"
    );

    // The operator fixes the key and restarts Herald: everything that waited is sent.
    let mut fixed = env;
    fixed.set("RESEND_API_KEY", "re_the_right_key");
    let app = app.restart_with(fixed).await;
    stub.wait_for(3, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 3, Duration::from_secs(10))
        .await;
    assert_eq!(app.count_status("failed").await, 0);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(
        (status, ready["providers"]["resend"].as_str()),
        (200, Some("ok")),
        "{ready}"
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_answering_503_fails_over_to_smtp() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // 503 says the request was not taken, so another provider may send the email (a 500, 502
    // or 504 may come after Resend took it: tests/api/once.rs).
    stub.script(&[(
        "over@example.com",
        &[Reply::Status(503, "service_unavailable")],
    )]);
    let app = spawn_with(Env::new(&smtp).with_resend(&stub.url)).await;
    app.add_late_user("over@example.com").await;
    let id = app.trigger_overdue().await[0];
    let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;
    assert_eq!(mail[0].to(), "over@example.com");
    assert!(stub.delivered().is_empty());
    let delivery = app.store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.provider.as_deref(), Some("smtp"));
    assert_eq!(
        outcomes(&app.store.attempts(id).await.unwrap()),
        [
            ("resend", "transient", Some(503)),
            ("smtp", "sent", Some(250))
        ]
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_of_250_goes_out_as_3_batches_and_a_bad_address_fails_alone() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[(
        "bad7@example.com",
        &[Reply::Status(422, "validation_error")],
    )]);
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    let app = spawn_with(env).await;
    app.add_late_users("bad", 250).await;
    assert_eq!(app.trigger_overdue().await.len(), 250);

    app.wait_for_status("sent", 249, Duration::from_secs(60))
        .await;
    app.wait_for_status("failed", 1, Duration::from_secs(10))
        .await;
    let requests = stub.requests();
    // The three jobs (100, 100, 50) are worked on side by side, so their requests may arrive in
    // any order: the sizes are compared in order of size, every request counted.
    let mut sizes: Vec<_> = requests
        .iter()
        .map(|r| (r.path.as_str(), r.recipients().len()))
        .collect();
    sizes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    assert_eq!(
        sizes,
        [
            ("/emails/batch", 100),
            ("/emails/batch", 100),
            ("/emails/batch", 50)
        ]
    );
    for r in &requests {
        assert_eq!(r.header("x-batch-validation"), Some("permissive"));
        assert!(
            r.header("idempotency-key")
                .unwrap()
                .starts_with("herald-batch-")
        );
    }
    let failed = app.store.failed(None, None, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].recipient, "bad7@example.com");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("Invalid `to` field")
    );
    let with_ids: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE status = 'sent' AND provider = 'resend' AND provider_id IS NOT NULL",
    )
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    assert_eq!(with_ids, 249);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_quota_pauses_resend_and_the_emails_go_by_smtp() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[("q0@example.com", &[Reply::DailyQuota])]);
    let app = spawn_with(Env::new(&smtp).with_resend(&stub.url)).await;
    app.add_late_user("q0@example.com").await;
    app.add_late_user("q1@example.com").await;
    let ids = app.trigger_overdue().await;
    smtp.wait_for(2, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 2, Duration::from_secs(10))
        .await;
    // One batch request answered 429 daily_quota_exceeded; both emails failed over.
    assert_eq!(stub.requests().len(), 1);
    for id in ids {
        assert_eq!(
            outcomes(&app.store.attempts(id).await.unwrap()),
            [("resend", "quota", Some(429)), ("smtp", "sent", Some(250))]
        );
    }
    // Resend stays paused (for the hour its retry-after said) while SMTP carries the mail.
    app.add_late_user("q2@example.com").await;
    app.trigger_overdue().await;
    smtp.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(stub.requests().len(), 1);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready["providers"]["resend"]
            .as_str()
            .unwrap()
            .contains("paused (quota)"),
        "{ready}"
    );
    drop(smtp);
    app.finish().await;
}
