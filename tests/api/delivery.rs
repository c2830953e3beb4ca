//! A tick delivers exactly the expected emails, computed in each user's zone.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_tick_emails_exactly_the_users_with_tasks_due_tomorrow() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let now = at("2026-11-23T09:00:00Z");
    let tomorrow = at("2026-11-24T10:30:00Z");
    let ada = app
        .add_user(
            "ada@example.com",
            "UTC",
            &[
                ("<script>alert('x')</script> & co", tomorrow, None),
                ("Book the dentist", at("2026-11-24T15:00:00Z"), None),
                ("Already done", tomorrow, Some(at("2026-11-22T10:00:00Z"))),
            ],
        )
        .await;
    // Nothing due tomorrow: a task due in three days and one overdue.
    app.add_user(
        "bob@example.com",
        "UTC",
        &[
            ("Later", at("2026-11-26T10:00:00Z"), None),
            ("Old", at("2026-11-20T10:00:00Z"), None),
        ],
    )
    .await;
    // Something due tomorrow, but opted out of reminders.
    let cyd = app
        .add_user("cyd@example.com", "UTC", &[("Hidden", tomorrow, None)])
        .await;
    app.store
        .opt_out(&cyd.to_string(), "task_reminders")
        .await
        .unwrap();

    let (status, report) = app.trigger("task_reminders", json!({ "at": now })).await;
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["planned"], 1, "{report}");
    assert_eq!(report["skipped"], 2, "{report}");
    assert_eq!(report["opted_out"], 1, "{report}");

    let mail = smtp.wait_for(1, Duration::from_secs(60)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    assert_eq!(m.to(), "ada@example.com");
    assert_eq!(m.header("Subject").unwrap(), "2 tasks are due tomorrow");
    assert_eq!(m.header("From").unwrap(), "Herald <herald@example.com>");
    assert!(m.header("Date").is_some());
    assert_eq!(
        m.header("X-Herald-Delivery").unwrap(),
        format!("manual:task_reminders:{ada}:2026-11-23")
    );
    let message_id = m.header("Message-ID").unwrap();
    assert!(message_id.ends_with("@example.com>"), "{message_id}");
    assert!(
        m.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    let text = m.part("text/plain").unwrap();
    let html = m.part("text/html").unwrap();
    // The text part comes first in a multipart/alternative body.
    assert!(m.raw.find("text/plain").unwrap() < m.raw.find("text/html").unwrap());
    assert!(
        text.contains("- <script>alert('x')</script> & co at 10:30"),
        "{text}"
    );
    assert!(text.contains("Book the dentist"));
    assert!(!text.contains("Already done"));
    assert!(
        html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");

    let stored: String = sqlx::query_scalar("SELECT message_id FROM deliveries WHERE user_id = $1")
        .bind(ada.to_string())
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(stored, message_id);

    // The operator's overview counts it.
    let (status, stats) = app.get("/api/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["deliveries"]["sent"], 1, "{stats}");
    assert_eq!(stats["queue"]["depth"], 0, "{stats}");
    assert!(
        stats["queue"]["live_workers"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["providers"]["smtp"], "ok", "{stats}");
    assert_eq!(
        stats["schedules"].as_array().unwrap().len(),
        herald::kinds::Kind::all().count(),
        "{stats}"
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomorrow_is_computed_in_each_users_zone() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    // 2026-11-23 20:00 UTC: Tuesday 24th 09:00 in Auckland (+13), Monday 23rd 12:00 in LA (-8).
    let now = at("2026-11-23T20:00:00Z");
    // Tuesday 24th 22:00 in Auckland (today there), Tuesday 24th 01:00 in LA (tomorrow there).
    let la_only = at("2026-11-24T09:00:00Z");
    // Wednesday 25th 23:00 in Auckland (tomorrow there), Wednesday 25th 02:00 in LA (too late).
    let auckland_only = at("2026-11-25T10:00:00Z");
    let tasks = [("Task A", la_only, None), ("Task B", auckland_only, None)];
    app.add_user("kiri@example.com", "Pacific/Auckland", &tasks)
        .await;
    app.add_user("lou@example.com", "America/Los_Angeles", &tasks)
        .await;

    let (status, report) = app.trigger("task_reminders", json!({ "at": now })).await;
    assert_eq!(
        (status, report["planned"].as_i64()),
        (202, Some(2)),
        "{report}"
    );
    let mail = smtp.wait_for(2, Duration::from_secs(60)).await;
    let text_for = |to: &str| {
        mail.iter()
            .find(|m| m.to() == to)
            .unwrap()
            .part("text/plain")
            .unwrap()
    };
    let kiri = text_for("kiri@example.com");
    assert!(
        kiri.contains("Task B at 23:00") && !kiri.contains("Task A"),
        "{kiri}"
    );
    assert!(kiri.contains("Wednesday 25 November 2026"), "{kiri}");
    let lou = text_for("lou@example.com");
    assert!(
        lou.contains("Task A at 01:00") && !lou.contains("Task B"),
        "{lou}"
    );
    assert!(lou.contains("Tuesday 24 November 2026"), "{lou}");
    drop(smtp);
    app.finish().await;
}
