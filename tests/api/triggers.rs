//! Manual triggers are test sends that never cancel a real email, and retention deletes old
//! deliveries without letting a trigger send anything twice: every test in both homes (the
//! command line's half on the servers; beside an embedded Herald it is refused).

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use herald::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::*;

fn local(zone: &str, date: &str, h: u32, m: u32) -> DateTime<Utc> {
    let tz: Tz = zone.parse().unwrap();
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    tz.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// `POST …/trigger` with no body at all, as in the README's quick start.
async fn trigger_without_body(app: &TestApp, schedule: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/api/schedules/{schedule}/trigger", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// How many messages each recipient got, duplicates counted.
fn per_recipient(smtp: &SmtpServer) -> HashMap<String, usize> {
    let mut per: HashMap<String, usize> = HashMap::new();
    for m in smtp.messages() {
        *per.entry(m.to().to_owned()).or_default() += 1;
    }
    per
}

async fn count_deliveries(app: &TestApp) -> i64 {
    app.store
        .sql_scalar("SELECT count(*) FROM deliveries", &[])
        .await
}

/// The test's own retention: the built-in defaults, not the harness's ten years.
fn default_retention(env: &mut Env) {
    env.set("HERALD__RETENTION__SENT", "30d");
    env.set("HERALD__RETENTION__FAILED", "90d");
    env.set("HERALD__RETENTION__SKIPPED", "30d");
}

async fn a_trigger_at_a_future_instant_is_refused_and_says_to_use_a_dry_run(home: Home) {
    let smtp = SmtpServer::start().await;
    let clock = Clock::manual(at("2026-11-23T08:00:00Z"));
    let app = spawn_with_clock(home.env(&smtp), clock).await;
    app.add_user(
        "soon@example.com",
        "UTC",
        &[("Tomorrow's task", at("2026-11-25T12:00:00Z"), None)],
    )
    .await;

    // Tomorrow by the application's clock, though long past by the wall clock.
    let tomorrow = json!({ "at": "2026-11-24T09:00:00Z" });
    let (status, body) = app.trigger("task_reminders", tomorrow).await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("\"at\" 2026-11-24T09:00:00+00:00 is in the future")
            && error.contains("Use \"dry_run\": true"),
        "{error}"
    );
    // A dry run may preview it.
    let (status, body) = app
        .trigger(
            "task_reminders",
            json!({ "at": "2026-11-24T09:00:00Z", "dry_run": true }),
        )
        .await;
    assert_eq!((status, body["planned"].as_i64()), (202, Some(1)), "{body}");
    assert_eq!(count_deliveries(&app).await, 0);

    // The command line: a non-zero exit and the same advice.
    let future = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    if let Some(out) = herald_beside(&app, &["trigger", "task_reminders", "--at", &future]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("is in the future") && stderr.contains("\"dry_run\": true"),
            "{stderr}"
        );
    }
    assert_eq!(count_deliveries(&app).await, 0);
    drop(smtp);
    app.finish().await;
}

async fn the_quick_start_trigger_leaves_every_users_real_email_to_go_out_at_their_nine(home: Home) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    env.set("HERALD__SCHEDULES__TASK_REMINDERS__ENABLED", "true");
    let clock = Clock::manual(at("2026-11-20T06:00:00Z"));
    let app = spawn_with_clock(env, clock).await;
    // 06:00 UTC: before 09:00 in London (UTC), Paris (08:00 UTC) and New York (14:00 UTC).
    let mut users = HashMap::new();
    for (i, zone) in ["UTC", "Europe/Paris", "America/New_York"]
        .into_iter()
        .enumerate()
    {
        let email = format!("q{i}@example.com");
        let id = app
            .add_user(
                &email,
                zone,
                &[("Pay the rent", local(zone, "2026-11-21", 12, 0), None)],
            )
            .await;
        users.insert(email, id);
    }
    app.advance(at("2026-11-20T06:00:00Z")).await;

    // The README's quick start: a trigger with no body sends every user a test reminder now.
    let (status, report) = trigger_without_body(&app, "task_reminders").await;
    assert_eq!(
        (status, report["planned"].as_i64()),
        (202, Some(3)),
        "{report}"
    );
    app.wait_for_status("sent", 3, Duration::from_secs(30))
        .await;
    smtp.wait_for(3, Duration::from_secs(30)).await;

    // The day goes on: each user's own 09:00 still sends the real reminder.
    let mut t = at("2026-11-20T06:15:00Z");
    while t <= at("2026-11-20T14:00:00Z") {
        app.advance(t).await;
        t += chrono::Duration::minutes(15);
    }
    app.wait_for_status("sent", 6, Duration::from_secs(30))
        .await;
    smtp.wait_for(6, Duration::from_secs(30)).await;
    assert_eq!(count_deliveries(&app).await, 6);
    let per = per_recipient(&smtp);
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|&n| n == 2), "{per:?}");
    let keys: Vec<(String, String, DateTime<Utc>)> = app
        .store
        .sql_rows(
            "SELECT recipient, dedup_key, planned_for FROM deliveries",
            &[],
        )
        .await;
    for (email, id) in &users {
        let mut mine: Vec<&str> = keys
            .iter()
            .filter(|(r, _, _)| r == email)
            .map(|(_, k, _)| k.as_str())
            .collect();
        mine.sort();
        assert_eq!(
            mine,
            [
                format!("manual:task_reminders:{id}:2026-11-20"),
                format!("task_reminders:{id}:2026-11-20"),
            ],
            "{email}"
        );
    }
    // The real ones were planned for each user's 09:00, not consumed by the trigger.
    let ny = keys
        .iter()
        .find(|(r, k, _)| r == "q2@example.com" && !k.starts_with("manual:"))
        .unwrap();
    assert_eq!(ny.2, local("America/New_York", "2026-11-20", 9, 0));
    drop(smtp);
    app.finish().await;
}

async fn triggering_twice_the_same_day_sends_once(home: Home) {
    let smtp = SmtpServer::start().await;
    let clock = Clock::manual(at("2026-11-23T10:00:00Z"));
    let app = spawn_with_clock(home.env(&smtp), clock.clone()).await;
    for i in 0..3 {
        app.add_late_user(&format!("t{i}@example.com")).await;
    }
    let (_, first) = trigger_without_body(&app, "overdue_summary").await;
    assert_eq!(first["planned"], 3, "{first}");
    // Again, with `at` earlier that day, and later with no body: the same local day.
    let (_, second) = app
        .trigger("overdue_summary", json!({ "at": "2026-11-23T07:00:00Z" }))
        .await;
    clock.set(at("2026-11-23T20:00:00Z"));
    let (_, third) = trigger_without_body(&app, "overdue_summary").await;
    for r in [&second, &third] {
        assert_eq!(
            (r["planned"].as_i64(), r["already_planned"].as_i64()),
            (Some(0), Some(3)),
            "{r}"
        );
    }
    app.wait_for_status("sent", 3, Duration::from_secs(30))
        .await;
    // Every delivery is recorded as sent, so every message the server will get is in.
    smtp.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(count_deliveries(&app).await, 3);
    assert_eq!(smtp.count(), 3);
    let per = per_recipient(&smtp);
    assert_eq!(per.len(), 3, "{per:?}");
    assert!(per.values().all(|&n| n == 1), "{per:?}");
    drop(smtp);
    app.finish().await;
}

async fn an_unknown_user_is_404_naming_the_id(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = home.spawn(&smtp).await;
    app.add_late_user("known@example.com").await;
    for (user_id, named) in [
        (json!(987654), "987654"),
        (json!(-1), "-1"),
        (json!("ada"), "ada"),
    ] {
        let (status, body) = app
            .trigger("overdue_summary", json!({ "user_id": user_id }))
            .await;
        assert_eq!(status, 404, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("no user with id {named}")),
            "{error}"
        );
    }
    if let Some(out) = herald_beside(&app, &["trigger", "overdue_summary", "--user", "987654"]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("no user with id 987654"), "{stderr}");
    }
    assert_eq!(count_deliveries(&app).await, 0);
    drop(smtp);
    app.finish().await;
}

async fn the_answer_has_counts_and_ids_only_when_asked_or_for_one_user(home: Home) {
    let smtp = SmtpServer::start().await;
    let clock = Clock::manual(at("2026-11-25T12:00:00Z"));
    let app = spawn_with_clock(home.env(&smtp), clock).await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(app.add_late_user(&format!("c{i}@example.com")).await);
    }
    let ids_of = |r: &Value| -> Vec<i64> {
        r["delivery_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no delivery_ids in {r}"))
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };

    // By default: counts only.
    let (status, r) = app
        .trigger("overdue_summary", json!({ "at": "2026-11-23T07:00:00Z" }))
        .await;
    assert_eq!((status, r["planned"].as_i64()), (202, Some(3)), "{r}");
    assert!(r.get("delivery_ids").is_none(), "{r}");

    // Asked for.
    let (_, r) = app
        .trigger(
            "overdue_summary",
            json!({ "at": "2026-11-24T07:00:00Z", "ids": true }),
        )
        .await;
    let ids = ids_of(&r);
    assert_eq!(ids.len(), 3, "{r}");
    let on_the_24th: Vec<i64> = app
        .store
        .sql_column(
            "SELECT id FROM deliveries WHERE dedup_key LIKE 'manual:overdue_summary:%:2026-11-24' ORDER BY id",
            &[],
        )
        .await;
    assert_eq!(ids, on_the_24th);

    // One user: always.
    let (_, r) = app
        .trigger(
            "overdue_summary",
            json!({ "at": "2026-11-25T07:00:00Z", "user_id": users[1] }),
        )
        .await;
    let ids = ids_of(&r);
    assert_eq!(ids.len(), 1, "{r}");
    let key: String = app
        .store
        .sql_scalar(
            "SELECT dedup_key FROM deliveries WHERE id = $1",
            &[ids[0].into()],
        )
        .await;
    assert_eq!(
        key,
        format!("manual:overdue_summary:{}:2026-11-25", users[1])
    );

    // The command line: --ids lists them (the CLI runs on the wall clock).
    if let Some(out) = herald_ok_beside(&app, &["trigger", "overdue_summary"]) {
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["planned"], 3, "{r}");
        assert!(r.get("delivery_ids").is_none(), "{r}");
        let yesterday = (Utc::now() - chrono::Duration::days(1)).to_rfc3339();
        let out = herald_ok_beside(
            &app,
            &["trigger", "overdue_summary", "--at", &yesterday, "--ids"],
        )
        .unwrap();
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(ids_of(&r).len(), 3, "{r}");
    }
    drop(smtp);
    app.finish().await;
}

/// `n` users' overdue summaries, sent, with the daemon stopped afterwards so that only the
/// test's own retention passes change anything; the deliveries' ids.
async fn sent_and_stopped(app: &mut TestApp, prefix: &str, n: usize) -> Vec<i64> {
    for i in 0..n {
        app.add_late_user(&format!("{prefix}{i}@example.com")).await;
    }
    let ids = app.trigger_overdue().await;
    assert_eq!(ids.len(), n);
    app.wait_for_status("sent", n as i64, Duration::from_secs(60))
        .await;
    app.stop().await.unwrap();
    ids
}

/// Gives delivery `id` the status `status`, last changed `days` days ago.
async fn age(app: &TestApp, id: i64, status: &str, days: i64) {
    let then = Utc::now() - chrono::Duration::days(days);
    app.store
        .sql_execute(
            "UPDATE deliveries SET status = $2, updated_at = $3,
                 sent_at = CASE WHEN $2 = 'sent' THEN $3 END
             WHERE id = $1",
            &[id.into(), status.into(), then.into()],
        )
        .await;
}

/// How many attempts delivery `id` has.
async fn attempts_of(app: &TestApp, id: i64) -> i64 {
    app.store
        .sql_scalar(
            "SELECT count(*) FROM delivery_attempts WHERE delivery_id = $1",
            &[id.into()],
        )
        .await
}

async fn retention_deletes_old_deliveries_with_their_attempts_and_keeps_newer_ones(home: Home) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    default_retention(&mut env);
    let mut app = spawn_with(env).await;
    let ids = sent_and_stopped(&mut app, "r", 7).await;

    // (delivery, status it is given, its age in days, kept?)
    let cases = [
        (ids[0], "sent", 31, false),
        (ids[1], "sent", 45, false),
        (ids[2], "sent", 29, true),
        (ids[3], "failed", 91, false),
        (ids[4], "failed", 89, true),
        (ids[5], "skipped", 31, false),
        // Never deleted, however old: it is still to be sent.
        (ids[6], "queued", 400, true),
    ];
    for (id, status, days, _) in cases {
        age(&app, id, status, days).await;
    }
    for (id, ..) in cases {
        assert!(
            attempts_of(&app, id).await > 0,
            "delivery {id} has an attempt"
        );
    }

    let settings = app.env.settings();
    let before = herald::retention::cutoffs(&settings.retention, Utc::now());
    // One row per statement: the pass loops until nothing is left.
    let deleted = app.store.delete_expired(&before, 1).await.unwrap();
    assert_eq!(
        (deleted.sent, deleted.failed, deleted.skipped),
        (2, 1, 1),
        "{deleted:?}"
    );
    for (id, status, days, kept) in cases {
        let row = app.store.delivery(id).await.unwrap();
        assert_eq!(row.is_some(), kept, "{status} {days} days old");
        assert_eq!(
            attempts_of(&app, id).await > 0,
            kept,
            "the attempts of {id}"
        );
    }
    let again = app.store.delete_expired(&before, 1000).await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
    drop(smtp);
    app.finish().await;
}

async fn sent_and_skipped_deliveries_lose_their_payload_after_its_retention_and_keep_their_record(
    home: Home,
) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    default_retention(&mut env);
    env.set("HERALD__RETENTION__PAYLOAD", "3d");
    let mut app = spawn_with(env).await;
    let ids = sent_and_stopped(&mut app, "p", 5).await;

    // (delivery, status it is given, its age in days, payload kept?)
    let cases = [
        (ids[0], "sent", 4, false),
        (ids[1], "sent", 2, true),
        (ids[2], "skipped", 5, false),
        // A retry needs it, however old.
        (ids[3], "failed", 20, true),
        (ids[4], "queued", 20, true),
    ];
    for (id, status, days, _) in cases {
        age(&app, id, status, days).await;
    }
    // The daemon's pass at start-up marked everything changed before three days ago as done;
    // these rows were aged after it, so forget the mark, as if they had been sent days ago.
    app.store
        .sql_execute("DELETE FROM housekeeping_marks", &[])
        .await;
    let settings = app.env.settings();
    let before = herald::retention::cutoffs(&settings.retention, Utc::now());
    // One row per statement: the pass goes on from where each statement stopped.
    let pass = app.store.delete_expired(&before, 1).await.unwrap();
    assert_eq!(pass.payloads, 2, "{pass:?}");
    assert_eq!(
        (pass.sent, pass.failed, pass.skipped),
        (0, 0, 0),
        "{pass:?}"
    );
    for (id, status, days, kept) in cases {
        let has_payload: bool = app
            .store
            .sql_scalar(
                "SELECT payload IS NOT NULL FROM deliveries WHERE id = $1",
                &[id.into()],
            )
            .await;
        let attempts = attempts_of(&app, id).await;
        assert_eq!(has_payload, kept, "{status}, {days} days old");
        assert!(attempts > 0, "the record of {id} keeps its attempts");
    }
    // The dashboard's read of the record, without its payload.
    let d = app.store.ui_delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!((d.row.status.as_str(), d.payload), ("sent", None));
    // The next pass starts where this one ended: nothing left to do.
    let again = app.store.delete_expired(&before, 1000).await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
    drop(smtp);
    app.finish().await;
}

async fn a_trigger_older_than_the_retention_allows_is_refused(home: Home) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    default_retention(&mut env);
    let clock = Clock::manual(at("2026-11-29T12:00:00Z"));
    let app = spawn_with_clock(env, clock).await;
    app.add_late_user("old@example.com").await;
    app.add_user(
        "older@example.com",
        "UTC",
        &[("Ancient", at("2026-10-01T10:00:00Z"), None)],
    )
    .await;

    // 31 days back: its deliveries may be deleted already, and with them their dedup keys.
    let (status, body) = app
        .trigger("overdue_summary", json!({ "at": "2026-10-29T12:00:00Z" }))
        .await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("is older than 28days ago")
            && error.contains("deleted after 30days (retention.sent)")
            && error.contains("could be sent twice"),
        "{error}"
    );
    assert_eq!(count_deliveries(&app).await, 0);
    // Within the horizon it plans.
    let (status, body) = app
        .trigger("overdue_summary", json!({ "at": "2026-11-02T12:00:00Z" }))
        .await;
    assert_eq!((status, body["planned"].as_i64()), (202, Some(1)), "{body}");

    let old = (Utc::now() - chrono::Duration::days(31)).to_rfc3339();
    if let Some(out) = herald_beside(&app, &["trigger", "overdue_summary", "--at", &old]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("could be sent twice"), "{stderr}");
    }
    drop(smtp);
    app.finish().await;
}

in_both_homes!(
    a_trigger_at_a_future_instant_is_refused_and_says_to_use_a_dry_run,
    the_quick_start_trigger_leaves_every_users_real_email_to_go_out_at_their_nine,
    triggering_twice_the_same_day_sends_once,
    an_unknown_user_is_404_naming_the_id,
    the_answer_has_counts_and_ids_only_when_asked_or_for_one_user,
    retention_deletes_old_deliveries_with_their_attempts_and_keeps_newer_ones,
    sent_and_skipped_deliveries_lose_their_payload_after_its_retention_and_keep_their_record,
    a_trigger_older_than_the_retention_allows_is_refused,
);
