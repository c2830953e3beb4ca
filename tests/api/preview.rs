//! `herald preview` and `GET /api/preview/{kind}`: every kind's email for one seeded user, with
//! their data, and nothing planned or sent.

use serde_json::Value;

use crate::helpers::*;

/// A user in Paris with something for every kind, and for each kind an instant it has something
/// to say then.
async fn seeded(app: &TestApp) -> (i64, Vec<(&'static str, &'static str)>) {
    let id = add_user(
        &app.store,
        "previewed@example.com",
        "Europe/Paris",
        &[
            ("Water the plants", at("2026-11-20T10:00:00Z"), None),
            ("Send the invoice", at("2026-11-24T12:00:00Z"), None),
            ("Call the bank", at("2026-11-23T10:00:00Z"), None),
            (
                "File the report",
                at("2026-11-18T10:00:00Z"),
                Some(at("2026-11-19T09:00:00Z")),
            ),
        ],
    )
    .await;
    app.store
        .insert_focus_sessions(&[(id, at("2026-11-23T09:00:00Z"), 25)])
        .await
        .unwrap();
    let kinds = vec![
        ("task_reminders", "2026-11-23T08:00:00Z"),
        ("overdue_summary", "2026-11-23T06:00:00Z"),
        ("weekly_report", "2026-11-22T16:00:00Z"),
        ("focus_streak", "2026-11-23T19:00:00Z"),
        ("due_soon", "2026-11-23T08:30:00Z"),
        ("overdue_morning", "2026-11-21T07:00:00Z"),
    ];
    (id, kinds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_previews_every_kind_for_a_seeded_user_and_plans_nothing() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let (id, kinds) = seeded(&app).await;
    for (kind, when) in &kinds {
        let (status, body) = app
            .get(&format!("/api/preview/{kind}?user_id={id}&at={when}"))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["kind"], *kind);
        let emails = body["emails"].as_array().unwrap();
        assert!(!emails.is_empty(), "{kind} has no email: {body}");
        let e = &emails[0];
        assert_eq!(e["to"], "previewed@example.com", "{kind}");
        assert!(!e["subject"].as_str().unwrap().is_empty(), "{kind}");
        assert!(e["html"].as_str().unwrap().contains("<html"), "{kind}");
        assert!(!e["text"].as_str().unwrap().is_empty(), "{kind}");
        let header = |name: &str| {
            e["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name))
                .map(|h| h["value"].as_str().unwrap().to_owned())
        };
        assert!(
            header("X-Herald-Delivery")
                .unwrap()
                .starts_with(&format!("manual:{kind}:{id}:")),
            "{kind}: {e}"
        );
        assert!(
            header("Message-ID").is_some() && header("Subject").is_some(),
            "{kind}"
        );
        assert!(
            e["eml"].as_str().unwrap().contains("multipart/alternative"),
            "{kind}"
        );
    }
    // The user's own data: the task titles are in the emails.
    let (_, body) = app
        .get(&format!(
            "/api/preview/task_reminders?user_id={id}&at=2026-11-23T08:00:00Z"
        ))
        .await;
    assert!(
        body["emails"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Send the invoice"),
        "{body}"
    );
    // Nothing was planned or sent.
    let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(planned, 0);

    // No email then: said, not an error.
    let (status, body) = app
        .get(&format!(
            "/api/preview/focus_streak?user_id={id}&at=2026-11-10T19:00:00Z"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["emails"], Value::Array(vec![]));
    assert!(
        body["none_because"]
            .as_str()
            .unwrap()
            .contains("would get no focus_streak"),
        "{body}"
    );
    // Clear errors: an unknown kind lists the kinds, an unknown user is named, a bad instant too.
    let (status, body) = app.get("/api/preview/monthly?user_id=1").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("task_reminders, overdue_summary"),
        "{body}"
    );
    let (status, body) = app.get("/api/preview/weekly_report?user_id=nobody").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no user with id nobody"),
        "{body}"
    );
    let (status, body) = app
        .get(&format!("/api/preview/weekly_report?user_id={id}&at=soon"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"at\""), "{body}");
    let (status, _) = app.get("/api/preview/weekly_report").await;
    assert_eq!(status, 400, "user_id is required");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_preview_prints_every_kind_for_a_seeded_user() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let (id, kinds) = seeded(&app).await;
    let id = id.to_string();
    for (kind, when) in &kinds {
        let eml = herald_ok(
            &app.env,
            &[
                "preview", kind, "--user", &id, "--at", when, "--format", "eml",
            ],
        );
        assert!(eml.contains("<previewed@example.com>"), "{kind}: {eml}");
        assert!(
            eml.contains(&format!("X-Herald-Delivery: manual:{kind}:{id}:")),
            "{kind}: {eml}"
        );
        let text = herald_ok(&app.env, &["preview", kind, "--user", &id, "--at", when]);
        assert!(text.contains("Subject: "), "{kind}: {text}");
        let html = herald_ok(
            &app.env,
            &[
                "preview", kind, "--user", &id, "--at", when, "--format", "html",
            ],
        );
        assert!(html.contains("<html"), "{kind}: {html}");
    }
    let out = herald_cmd(&app.env)
        .args(["preview", "monthly", "--user", &id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the kinds are task_reminders"), "{stderr}");
    let out = herald_cmd(&app.env)
        .args(["preview", "weekly_report", "--user", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no user with id nobody"), "{stderr}");
    assert_eq!(app.count_status("queued").await, 0);
    drop(smtp);
    app.finish().await;
}
