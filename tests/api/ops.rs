//! What a new operator trips on: a dry run predicts the real trigger's answer and shows a
//! bounded preview; a paused schedule is skipped by the planner and refuses triggers until it
//! is resumed; `To:` carries the user's name; the outbox names its files by delivery id.

use std::time::Duration;

use chrono::TimeDelta;
use herald::schedule::plan_due;
use serde_json::json;

use crate::helpers::*;

async fn a_dry_run_predicts_the_real_answer_and_caps_its_preview(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = home.spawn(&smtp).await;
    app.add_late_users("dry", 130).await;
    let body = json!({ "at": at(TICK), "dry_run": true });

    let (status, before) = app.trigger("overdue_summary", body.clone()).await;
    assert_eq!(status, 202, "{before}");
    assert_eq!(before["planned"], 130, "{before}");
    assert_eq!(before["already_planned"], 0, "{before}");
    assert_eq!(before["preview"].as_array().unwrap().len(), 100);
    assert_eq!(before["preview_left_out"], 30, "{before}");

    let (status, real) = app
        .trigger("overdue_summary", json!({ "at": at(TICK) }))
        .await;
    assert_eq!(status, 202, "{real}");
    assert_eq!(real["planned"], 130, "{real}");
    assert!(real.get("preview_left_out").is_none(), "{real}");

    // After the real trigger, a dry run says what a second trigger would: nothing new.
    let (_, after) = app.trigger("overdue_summary", body).await;
    assert_eq!(after["planned"], 0, "{after}");
    assert_eq!(after["already_planned"], 130, "{after}");
    assert_eq!(after["preview_left_out"], 0, "{after}");
    let (_, again) = app
        .trigger("overdue_summary", json!({ "at": at(TICK) }))
        .await;
    assert_eq!(
        (&again["planned"], &again["already_planned"]),
        (&after["planned"], &after["already_planned"])
    );
    app.finish().await;
}

async fn a_paused_schedule_is_skipped_by_the_planner_and_refuses_triggers_until_resumed(
    home: Home,
) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    env.set("HERALD__SCHEDULES__OVERDUE_SUMMARY__ENABLED", "true");
    // 07:00 UTC every day. The app's clock stays at `start`: its planner only starts the
    // watermark there, and the test plans later instants itself.
    let start = at("2026-11-23T06:00:00Z");
    let app = spawn_with_clock(env.clone(), herald::clock::Clock::manual(start)).await;
    app.add_late_users("paused", 3).await;
    let settings = env.settings();
    let schedule = settings.schedule("overdue_summary").unwrap();
    plan_due(&app.store, schedule, start).await.unwrap();
    let next = |list: serde_json::Value| {
        list["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "overdue_summary")
            .unwrap()
            .clone()
    };
    let (_, list) = app.get("/api/schedules").await;
    assert!(!next(list.clone())["next_fire"].is_null(), "{list}");

    let (status, paused) = app
        .post(
            "/api/schedules/overdue_summary/pause",
            json!({ "reason": "migrating" }),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"]["reason"], "migrating", "{paused}");
    let (_, list) = app.get("/api/schedules").await;
    let row = next(list);
    assert_eq!(row["paused"]["reason"], "migrating", "{row}");
    assert!(
        row["next_fire"].is_null(),
        "a paused schedule has no next fire: {row}"
    );
    let (_, stats) = app.get("/api/stats").await;
    assert!(
        stats["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "overdue_summary" && !s["paused"].is_null()),
        "{stats}"
    );

    // The 07:00 fire passes while paused: nothing is planned, and the watermark moves on.
    let r = plan_due(&app.store, schedule, start + TimeDelta::hours(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.planned + r.missed + r.skipped, 0, "{r:?}");
    assert!(r.paused.is_some());
    assert_eq!(
        app.store.watermark("overdue_summary").await.unwrap(),
        Some(start + TimeDelta::hours(2))
    );
    let (status, refused) = app.trigger("overdue_summary", json!({})).await;
    assert_eq!(status, 409, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("is paused") && error.contains("/api/schedules/overdue_summary/resume"),
        "{error}"
    );
    let (status, _) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at(TICK), "dry_run": true }),
        )
        .await;
    assert_eq!(status, 202, "a dry run of a paused schedule still previews");

    let (status, resumed) = app
        .post("/api/schedules/overdue_summary/resume", json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["was_paused"], true);
    // The next day's fire is planned again; the paused one is not sent late.
    let r = plan_due(
        &app.store,
        schedule,
        start + TimeDelta::days(1) + TimeDelta::hours(2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.planned, 3, "{r:?}");
    assert!(r.paused.is_none());
    let (status, unknown) = app.post("/api/schedules/nope/pause", json!({})).await;
    assert_eq!(status, 404, "{unknown}");
    app.finish().await;
}

async fn to_carries_the_users_name_and_the_outbox_names_files_by_delivery_id(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = home.spawn(&smtp).await;
    add_named(&app, "ada@example.com", "Ada Lovelace").await;
    app.trigger_overdue().await;
    smtp.wait_for(1, Duration::from_secs(30)).await;
    let to = smtp.messages()[0].header("To").unwrap();
    assert_eq!(to, "\"Ada Lovelace\" <ada@example.com>");
    app.finish().await;

    let mut env = home.env(&smtp);
    env.vars.retain(|(k, _)| k != "SMTP_URL");
    let outbox = std::env::temp_dir().join(format!("herald-outbox-{}", env.database));
    env.set("HERALD__MAIL__OUTBOX_DIR", &outbox.display().to_string());
    let app = spawn_with(env).await;
    add_named(&app, "bob@example.com", "Bob Smith").await;
    let ids = app.trigger_overdue().await;
    app.wait_for_status("sent", 1, Duration::from_secs(30))
        .await;
    let file = outbox.join(format!("{}.eml", ids[0]));
    let eml =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("no {}: {e}", file.display()));
    assert!(eml.contains("To: \"Bob Smith\" <bob@example.com>"), "{eml}");
    app.finish().await;
    let _ = std::fs::remove_dir_all(outbox);
}

/// A user named `name` with one task overdue at [`TICK`].
async fn add_named(app: &TestApp, email: &str, name: &str) {
    let ids = app
        .store
        .insert_users(&[NewUser {
            email: email.into(),
            display_name: name.into(),
            timezone: "UTC".into(),
        }])
        .await
        .unwrap();
    app.store
        .insert_tasks(&[NewTask {
            owner_id: ids[0],
            title: "Late".into(),
            due_at: Some(at(LATE)),
            completed_at: None,
        }])
        .await
        .unwrap();
}

in_both_homes!(
    a_dry_run_predicts_the_real_answer_and_caps_its_preview,
    a_paused_schedule_is_skipped_by_the_planner_and_refuses_triggers_until_resumed,
    to_carries_the_users_name_and_the_outbox_names_files_by_delivery_id,
);
