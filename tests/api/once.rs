//! Once to the provider: an outcome Herald cannot tell (a timeout, a 502) is retried on the same
//! provider under the same idempotency key and never failed over; a batch is the same batch on
//! every retry, also after its process was killed mid-request; one clock decides what is due.
//! Duplicates are counted at the provider, never deduplicated by the test. In both homes, but
//! for the tests that kill a `herald` process of their own or push a job into Redis
//! (servers-only: tests/api/main.rs says why).

use std::{collections::HashMap, process::Stdio, time::Duration};

use herald::{clock::Clock, store::DeliveryStatus, worker::process_job};
use serde_json::json;

use crate::helpers::*;
use crate::resend_stub::{Reply, ResendStub};

/// Resend first, then SMTP; Herald gives Resend 1 s, and retries every 300 ms.
fn resend_env(home: Home, smtp: &SmtpServer, stub: &ResendStub) -> Env {
    let mut env = home.env(smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend", "smtp"]"#);
    env.set("HERALD__MAIL__RESEND__TIMEOUT", "1s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "500ms");
    env.set(
        "HERALD__QUEUE__RETRY_DELAYS",
        &serde_json::to_string(&vec!["300ms"; 12]).unwrap(),
    );
    // queue.max_attempts must leave those 13 attempts their claims.
    env.set("HERALD__QUEUE__MAX_ATTEMPTS", "20");
    env
}

/// How many times the stand-in accepted an email for each recipient.
fn accepted_per_recipient(stub: &ResendStub) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for (_, email) in stub.accepted() {
        *per.entry(crate::resend_stub::recipient(&email))
            .or_default() += 1;
    }
    per
}

/// Every recipient accepted exactly once, and the number of recipients.
fn assert_each_accepted_once(stub: &ResendStub, n: usize) {
    let per = accepted_per_recipient(stub);
    let copies: Vec<_> = per.iter().filter(|(_, c)| **c > 1).collect();
    assert!(copies.is_empty(), "accepted more than once: {copies:?}");
    assert_eq!(per.len(), n, "{per:?}");
}

/// The idempotency keys of the batch requests, and the recipients each key was sent with.
fn batch_keys(stub: &ResendStub) -> HashMap<String, Vec<Vec<String>>> {
    let mut keys: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    for r in stub.requests().iter().filter(|r| r.path == "/emails/batch") {
        keys.entry(r.header("idempotency-key").unwrap().to_owned())
            .or_default()
            .push(r.recipients());
    }
    keys
}

fn outcomes(attempts: &[herald::store::AttemptRow]) -> Vec<(&str, &str)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str()))
        .collect()
}

async fn a_resend_timeout_is_retried_at_resend_under_the_same_key_never_by_smtp(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend takes the email but answers after 2 s; Herald gives up after 1 s.
    stub.script(&[("ida@example.com", &[Reply::Hang(Duration::from_secs(2))])]);
    let mut env = resend_env(home, &smtp, &stub);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    let app = spawn_with(env).await;
    app.add_late_user("ida@example.com").await;
    let id = app.trigger_overdue().await[0];
    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;

    let delivery = app.store.delivery(id).await.unwrap().unwrap();
    assert_each_accepted_once(&stub, 1);
    assert_eq!(smtp.count(), 0, "a copy went by SMTP");
    for r in stub.requests() {
        assert_eq!(
            r.header("idempotency-key"),
            Some(delivery.dedup_key.as_str())
        );
    }
    let attempts = app.store.attempts(id).await.unwrap();
    let seen = outcomes(&attempts);
    assert_eq!(seen.first(), Some(&("resend", "unknown")), "{seen:?}");
    assert_eq!(seen.last(), Some(&("resend", "sent")), "{seen:?}");
    assert!(seen.iter().all(|(p, _)| *p == "resend"), "{seen:?}");
    drop(smtp);
    app.finish().await;
}

async fn unknown_outcomes_past_the_retries_fail_saying_a_copy_may_have_been_delivered(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend never answers in time (nor takes the email).
    let silent = Reply::Silent(Duration::from_secs(5));
    stub.script(&[("ida@example.com", &[silent.clone(), silent.clone(), silent])]);
    let mut env = resend_env(home, &smtp, &stub);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "1");
    env.set("HERALD__QUEUE__RETRY_DELAYS", r#"["100ms", "100ms"]"#);
    let app = spawn_with(env).await;
    app.add_late_user("ida@example.com").await;
    let id = app.trigger_overdue().await[0];
    app.wait_for_status("failed", 1, Duration::from_secs(60))
        .await;

    let delivery = app.store.delivery(id).await.unwrap().unwrap();
    let error = delivery.last_error.unwrap();
    assert!(error.contains("a copy may have been delivered"), "{error}");
    assert!(error.contains(&delivery.dedup_key), "{error}");
    assert!(
        error.contains(delivery.message_id.as_deref().unwrap()),
        "{error}"
    );
    let attempts = app.store.attempts(id).await.unwrap();
    assert_eq!(
        outcomes(&attempts),
        [("resend", "unknown"); 3],
        "no failover to SMTP"
    );
    assert_eq!(smtp.count(), 0);
    assert!(stub.accepted().is_empty());
    drop(smtp);
    app.finish().await;
}

async fn a_batch_that_times_out_is_retried_whole_under_its_key_and_sent_once(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[("b1@example.com", &[Reply::Hang(Duration::from_secs(2))])]);
    let app = spawn_with(resend_env(home, &smtp, &stub)).await;
    let n = 5;
    for i in 0..n {
        app.add_late_user(&format!("b{i}@example.com")).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(60))
        .await;

    assert_each_accepted_once(&stub, n);
    assert_eq!(smtp.count(), 0, "a copy went by SMTP");
    // Each key always came with the same emails: the same batch.
    for (key, sends) in batch_keys(&stub) {
        assert!(sends.windows(2).all(|w| w[0] == w[1]), "{key}: {sends:?}");
    }
    let unknown: i64 = app
        .store
        .sql_scalar(
            "SELECT count(*) FROM delivery_attempts WHERE outcome = 'unknown'",
            &[],
        )
        .await;
    assert!(unknown > 0, "the timeout was not recorded as unknown");
    let batches: i64 = app
        .store
        .sql_scalar("SELECT count(*) FROM batches", &[])
        .await;
    assert_eq!(batches, 0, "a finished batch is forgotten");
    drop(smtp);
    app.finish().await;
}

async fn a_batch_that_fails_as_a_whole_is_retried_under_the_same_key(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[(
        "*",
        &[
            Reply::Status(500, "internal_server_error"),
            Reply::Status(500, "internal_server_error"),
        ],
    )]);
    let mut env = resend_env(home, &smtp, &stub);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    let app = spawn_with(env).await;
    let n = 6;
    for i in 0..n {
        app.add_late_user(&format!("w{i}@example.com")).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(60))
        .await;

    assert_each_accepted_once(&stub, n);
    let keys = batch_keys(&stub);
    let failed_keys: Vec<&String> = stub
        .requests()
        .iter()
        .filter(|r| r.status == 500)
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect::<Vec<_>>()
        .iter()
        .filter_map(|k| keys.get_key_value(k).map(|(k, _)| k))
        .collect();
    assert!(!failed_keys.is_empty());
    for key in failed_keys {
        let sends = &keys[key];
        assert!(sends.len() >= 2, "{key} was not retried: {sends:?}");
        assert!(sends.windows(2).all(|w| w[0] == w[1]), "{key}: {sends:?}");
    }
    // Every email was accepted under a key that had been refused before or was new, never
    // under two keys.
    let mut key_of: HashMap<String, String> = HashMap::new();
    for (key, email) in stub.accepted() {
        let to = crate::resend_stub::recipient(&email);
        assert!(key_of.insert(to, key.unwrap()).is_none());
    }
    drop(smtp);
    app.finish().await;
}

async fn a_batch_resend_took_before_answering_502_is_retried_there_and_arrives_once(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend takes the batch, and a gateway answers 502: the answer does not say "not taken".
    stub.script(&[("g0@example.com", &[Reply::TakenThen(502)])]);
    let app = spawn_with(resend_env(home, &smtp, &stub)).await;
    let n = 5;
    for i in 0..n {
        app.add_late_user(&format!("g{i}@example.com")).await;
    }
    let ids = app.trigger_overdue().await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(60))
        .await;

    // Every copy, wherever it arrived: at the stand-in and at the SMTP server.
    let mut copies = accepted_per_recipient(&stub);
    for m in smtp.messages() {
        *copies.entry(m.to().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = copies.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "not exactly once: {twice:?}");
    assert_eq!(copies.len(), n, "{copies:?}");
    assert_eq!(smtp.count(), 0, "a copy went by SMTP");
    // The 502's key came again with the same emails, and got the answer Resend kept.
    let keys = batch_keys(&stub);
    let requests = stub.requests();
    let gateway: Vec<_> = requests.iter().filter(|r| r.status == 502).collect();
    assert_eq!(gateway.len(), 1, "{requests:?}");
    let sends = &keys[gateway[0].header("idempotency-key").unwrap()];
    assert!(sends.len() >= 2, "not retried under its key: {sends:?}");
    assert!(sends.windows(2).all(|w| w[0] == w[1]), "{sends:?}");
    for id in ids {
        let attempts = app.store.attempts(id).await.unwrap();
        let seen = outcomes(&attempts);
        assert!(seen.iter().all(|(p, _)| *p == "resend"), "{seen:?}");
        assert_eq!(seen.last(), Some(&("resend", "sent")), "{seen:?}");
    }
    let unknown: i64 = app
        .store
        .sql_scalar(
            "SELECT count(*) FROM delivery_attempts WHERE outcome = 'unknown'",
            &[],
        )
        .await;
    assert!(unknown > 0, "the 502 was not recorded as unknown");
    drop(smtp);
    app.finish().await;
}

async fn an_email_resend_holds_after_going_alone_goes_alone_again_under_its_key_in_a_shared_job(
    home: Home,
) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend takes the lone email, and a gateway answers 502: its outcome is unknown.
    stub.script(&[("solo@example.com", &[Reply::TakenThen(502)])]);
    let mut env = resend_env(home, &smtp, &stub);
    env.set("HERALD__MAIL__RESEND__BATCH_SIZE", "10");
    let (store, _guard) = bare_store(&env).await;
    let emails = ["solo@example.com", "r1@example.com", "r2@example.com"];
    let ids = crate::fencing::due_deliveries(&store, &emails).await;
    let deps = crate::fencing::worker_deps(&env, store.clone()).await;
    // A job of one: `POST /emails` under the email's own dedup key.
    process_job(&deps, &ids[..1]).await.unwrap();
    let solo = store.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(solo.status, DeliveryStatus::Queued);
    let held_by = crate::fencing::held_by(&store, ids[0]).await;
    assert_eq!(held_by.as_deref(), Some("resend"), "{:?}", solo.last_error);
    // Its retry falls due with two other emails, and one job carries all three.
    crate::fencing::all_due_now(&store).await;
    process_job(&deps, &ids).await.unwrap();

    for &id in &ids {
        let d = store.delivery(id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Sent, "delivery {id}");
    }
    // Every copy that arrived, counted where it arrived.
    let per = accepted_per_recipient(&stub);
    assert_eq!(per.get("solo@example.com"), Some(&1), "{per:?}");
    assert_each_accepted_once(&stub, emails.len());
    assert_eq!(smtp.count(), 0, "a copy went by SMTP");
    // Both requests for it went alone, under the key it first went with.
    let requests = stub.requests();
    let for_solo: Vec<_> = requests
        .iter()
        .filter(|r| r.recipients().contains(&"solo@example.com".to_owned()))
        .collect();
    assert_eq!(for_solo.len(), 2, "{requests:?}");
    for r in for_solo {
        assert_eq!(r.path, "/emails", "{requests:?}");
        assert_eq!(r.header("idempotency-key"), Some(solo.dedup_key.as_str()));
    }
    drop(smtp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_resend_holds_its_batch_does_not_send_it_again() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend takes the batch and holds the answer past the kill.
    stub.script(&[("k0@example.com", &[Reply::Hang(Duration::from_secs(600))])]);
    let mut env = resend_env(Home::Servers, &smtp, &stub);
    // The kill lands while the request is still in flight, well within its timeout.
    env.set("HERALD__MAIL__RESEND__TIMEOUT", "1s");
    env.set("HERALD__MAIL__TIMEOUT", "1s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "500ms");
    env.set("HERALD__QUEUE__LEASE", "5s");
    let _guard = EnvGuard(env.clone());
    let out = herald_cmd(&env).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let n = 4;
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
        &Clock::System,
        &settings.retention,
    )
    .await
    .unwrap();
    assert_eq!(report.planned, n);

    let mut cmd = herald_cmd(&env);
    cmd.env("RUST_LOG", "warn")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let daemon = Daemon(cmd.spawn().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stub.held() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batch reached Resend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: nothing is recorded; the rows stay `sending` until their lease runs out.
    drop(daemon);
    let sending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sending'")
            .fetch_one(store.pg())
            .await
            .unwrap();
    assert!(sending > 0);

    let app = spawn_with(env.clone()).await;
    app.wait_for_status("sent", n as i64, Duration::from_secs(90))
        .await;
    assert_each_accepted_once(&stub, n);
    for (key, sends) in batch_keys(&stub) {
        assert!(sends.windows(2).all(|w| w[0] == w[1]), "{key}: {sends:?}");
    }
    assert_eq!(smtp.count(), 0, "a copy went by SMTP");
    drop(smtp);
    app.finish().await;
}

async fn a_clock_ahead_of_real_time_claims_and_sends_what_it_says_is_due(home: Home) {
    let smtp = SmtpServer::start().await;
    // Herald's clock is two days ahead of PostgreSQL's.
    let clock = Clock::manual(chrono::Utc::now() + chrono::Duration::days(2));
    let app = spawn_with_clock(home.env(&smtp), clock).await;
    app.add_late_user("ahead@example.com").await;
    // Planned at Herald's now: due two days after PostgreSQL's now.
    let (status, report) = app.trigger("overdue_summary", json!({ "ids": true })).await;
    assert_eq!(status, 202, "{report}");
    let id = report["delivery_ids"][0].as_i64().unwrap();
    let due = app.store.delivery(id).await.unwrap().unwrap().due_at;
    assert!(due > chrono::Utc::now() + chrono::Duration::days(1));
    // Well within redispatch_after (5 min), which is how long a refused claim waited.
    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;
    let mail = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1);
    drop(smtp);
    app.finish().await;
}

/// A task id as apalis-redis writes them (a ULID).
fn ulid() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("01{}", &hex[..24])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_job_goes_to_the_dead_letter_list_and_the_worker_carries_on() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let q = app.env.settings().queue.name;
    let garbage: &[u8] = b"\xff\xfe not a delivery id {";
    let task = ulid();
    let mut conn = herald::queue::connect(&redis_url()).await.unwrap();
    // The keys apalis-redis writes for a pushed job: data, metadata, then the active list.
    redis::pipe()
        .atomic()
        .hset(format!("{q}:data"), &task, garbage)
        .hset_multiple(
            format!("{q}:meta:{task}"),
            &[
                ("attempts", "0"),
                ("max_attempts", "25"),
                ("status", "Pending"),
            ],
        )
        .rpush(format!("{q}:active"), &task)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let dead = format!("{q}:dead-letter");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let letters: Vec<Vec<u8>> = loop {
        let letters: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&dead)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !letters.is_empty() {
            break letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters, [garbage.to_vec()]);

    // The worker is alive: the next email goes out.
    app.add_late_user("after@example.com").await;
    app.trigger_overdue().await;
    let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mail.len(), 1);
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;
    // The garbage job left nothing behind but its dead letter.
    let data: bool = redis::cmd("HEXISTS")
        .arg(format!("{q}:data"))
        .arg(&task)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!data);
    assert!(herald::metrics::dead_letters() >= 1);
    drop(smtp);
    app.finish().await;
}

async fn a_name_or_title_with_line_breaks_adds_no_header_and_no_recipient(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = home.spawn(&smtp).await;
    let id = app
        .store
        .insert_users(&[crate::helpers::NewUser {
            email: "eve@example.com".into(),
            display_name: "Eve\r\nBcc: evil@example.com\r\nX-Injected: name".into(),
            timezone: "UTC".into(),
        }])
        .await
        .unwrap()[0];
    app.store
        .insert_tasks(&[crate::helpers::NewTask {
            owner_id: id,
            title: "Late\r\nBcc: evil@example.com\nX-Injected: title\r\n\r\nbody".into(),
            due_at: Some(at(LATE)),
            completed_at: None,
        }])
        .await
        .unwrap();
    app.trigger_overdue().await;
    app.wait_for_status("sent", 1, Duration::from_secs(30))
        .await;
    let mail = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1, "one message");
    assert_eq!(mail[0].rcpt_tos, ["eve@example.com"], "one recipient");
    let head = mail[0].raw.split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.starts_with("bcc:") && !lower.starts_with("x-injected:"),
            "an injected header: {line:?}\n{head}"
        );
    }
    let to: Vec<&str> = head
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("to:"))
        .collect();
    assert_eq!(to.len(), 1, "{head}");
    drop(smtp);
    app.finish().await;
}

in_both_homes!(
    a_resend_timeout_is_retried_at_resend_under_the_same_key_never_by_smtp,
    unknown_outcomes_past_the_retries_fail_saying_a_copy_may_have_been_delivered,
    a_batch_that_times_out_is_retried_whole_under_its_key_and_sent_once,
    a_batch_that_fails_as_a_whole_is_retried_under_the_same_key,
    a_batch_resend_took_before_answering_502_is_retried_there_and_arrives_once,
    a_clock_ahead_of_real_time_claims_and_sends_what_it_says_is_due,
    a_name_or_title_with_line_breaks_adds_no_header_and_no_recipient,
    an_email_resend_holds_after_going_alone_goes_alone_again_under_its_key_in_a_shared_job,
);
