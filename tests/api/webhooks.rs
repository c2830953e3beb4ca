//! Bounces and complaints: Resend's webhooks verified as Standard Webhooks sign them, recorded
//! once beside their delivery, a hard bounce suppressing the address until an operator lifts it;
//! and an SMTP server's refusal of a mailbox doing the same. Emails are counted where they arrive.

use std::time::Duration;

use herald::webhooks::Verifier;
use serde_json::{Value, json};

use crate::{helpers::*, resend_stub::ResendStub};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Posts `body` to `/webhooks/resend`, signed with `secret` at `at` (seconds since 1970).
async fn deliver(app: &TestApp, id: &str, body: &Value, secret: &str, at: i64) -> (u16, Value) {
    let text = body.to_string();
    let signature = Verifier::new(secret).unwrap().sign(id, at, text.as_bytes());
    let r = app
        .http
        .post(format!("{}/webhooks/resend", app.address))
        .header("svix-id", id)
        .header("svix-timestamp", at.to_string())
        .header("svix-signature", signature)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn event(kind: &str, email_id: &str, to: &str) -> Value {
    let mut e = json!({
        "type": kind,
        "created_at": "2026-11-23T07:00:05.000Z",
        "data": { "email_id": email_id, "to": [to], "subject": "1 task is overdue" }
    });
    if kind == "email.bounced" {
        e["data"]["bounce"] = json!({
            "type": "Permanent", "subType": "General",
            "message": "The recipient's mail server permanently rejected the email."
        });
    }
    e
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(app.store.pg())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_hard_bounce_suppresses_the_address_and_forged_or_stale_ones_are_refused() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("RESEND_WEBHOOK_SECRET", SECRET);
    let app = spawn_with(env).await;
    app.add_late_user("ida@example.com").await;
    app.add_late_user("bob@example.com").await;
    app.trigger_overdue().await;
    stub.wait_for(2, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 2, Duration::from_secs(10))
        .await;
    let (ida_delivery, email_id): (i64, String) = sqlx::query_as(
        "SELECT id, provider_id FROM deliveries WHERE recipient = 'ida@example.com'",
    )
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    let now = chrono::Utc::now().timestamp();

    // Delivered, then the same event again: recorded once, beside its delivery.
    let delivered = event("email.delivered", &email_id, "ida@example.com");
    let (status, answer) = deliver(&app, "msg_1", &delivered, SECRET, now).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivery_id"], ida_delivery, "{answer}");
    let (status, again) = deliver(&app, "msg_1", &delivered, SECRET, now).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 1);

    // Refused: another secret, a stale timestamp, no signature. Nothing is recorded.
    let bounced = event("email.bounced", &email_id, "Ida@Example.com");
    let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, answer) = deliver(&app, "msg_2", &bounced, other, now).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no signature in svix-signature matches"),
        "{answer}"
    );
    let (status, answer) = deliver(&app, "msg_2", &bounced, SECRET, now - 600).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("more than 5 minutes from now"),
        "{answer}"
    );
    let r = app
        .http
        .post(format!("{}/webhooks/resend", app.address))
        .json(&bounced)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_events").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM suppressions").await, 0);

    // Signed: the address is suppressed, with the event that said so.
    let (status, answer) = deliver(&app, "msg_2", &bounced, SECRET, now).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["suppressed"], json!(["ida@example.com"]), "{answer}");
    let (status, list) = app.get("/api/suppressions").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["address"], "ida@example.com", "{list}");
    assert_eq!(list[0]["reason"], "bounced");
    assert_eq!(list[0]["event"], "email.bounced");
    assert_eq!(list[0]["delivery_id"], ida_delivery);
    // The dashboard's rates: two emails sent in the last day, one hard bounce.
    let r = app
        .store
        .suppression_rates(chrono::Utc::now() - chrono::Duration::hours(24))
        .await
        .unwrap();
    assert_eq!((r.sent, r.bounced, r.complained), (2, 1, 0));
    // And /metrics: one bounce per two emails sent, in both windows.
    let metrics = app.metrics_text().await;
    for window in ["24h", "7d"] {
        let line = format!("herald_bounce_rate{{window=\"{window}\"}} 0.5");
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
        let line = format!("herald_complaint_rate{{window=\"{window}\"}} 0.0");
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }

    // The next fire leaves the address out and says so; Bob still gets his.
    let (_, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at(TICK) + chrono::Duration::days(1) }),
        )
        .await;
    assert_eq!(report["planned"], 1, "{report}");
    assert_eq!(report["suppressed"], 1, "{report}");
    stub.wait_for(3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_ida = stub
        .delivered()
        .iter()
        .filter(|e| crate::resend_stub::recipient(e) == "ida@example.com")
        .count();
    assert_eq!(to_ida, 1, "the suppressed address got another email");

    // Lifted from the CLI: the address gets email again.
    let out = herald_ok(&app.env, &["suppressions", "lift", "ida@example.com"]);
    assert!(out.contains("lifted: ida@example.com"), "{out}");
    let (status, _) = app.get("/api/suppressions/ida@example.com").await;
    assert_eq!(status, 404);
    let (_, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at(TICK) + chrono::Duration::days(2) }),
        )
        .await;
    assert_eq!(report["suppressed"], 0, "{report}");
    assert_eq!(report["planned"], 2, "{report}");

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"herald_suppressions_total{reason="bounced"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"herald_webhook_events_total{type="email.bounced"} 1"#),
        "{metrics}"
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_refusal_of_the_mailbox_suppresses_it_and_a_queued_email_to_it_is_skipped() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    smtp.script(&[(
        "gone@example.com",
        &["550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"],
    )]);
    let mut env = Env::new(&smtp);
    env.set("HERALD__SCHEDULES__WEEKLY_REPORT__SPREAD", "1h");
    let now = at(TICK);
    let app = spawn_with_clock(env, herald::clock::Clock::manual(now)).await;
    app.add_late_user("gone@example.com").await;
    // Planned now, due within the hour: queued while the first email bounces.
    let (_, report) = app.trigger("weekly_report", json!({ "at": now })).await;
    assert_eq!(report["planned"], 1, "{report}");
    app.trigger_overdue().await;
    app.wait_for_status("failed", 1, Duration::from_secs(30))
        .await;
    let (status, s) = app.get("/api/suppressions/gone@example.com").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["reason"], "bounced");
    assert_eq!(s["event"], "smtp 550 5.1.1");

    // The weekly report, queued before the bounce, is skipped when claimed.
    app.advance(now + chrono::Duration::hours(1)).await;
    app.wait_for_status("skipped", 1, Duration::from_secs(30))
        .await;
    let note: String =
        sqlx::query_scalar("SELECT last_error FROM deliveries WHERE kind = 'weekly_report'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();
    assert!(
        note.contains("gone@example.com is on the suppression list"),
        "{note}"
    );
    assert_eq!(smtp.counts().recipient("gone@example.com"), 0);
    drop(smtp);
    app.finish().await;
}
