//! Kinds relative to each task's due time. `due_soon`: one email per task, 30 minutes before it
//! is due, walked through a simulated night in three zones (Kathmandu at +05:45, Paris across its
//! autumn DST change, New York), past local midnight, through an outage of Herald, and with due
//! times that move. `overdue_morning`: one email per task still open at 08:00 local the morning
//! after its due time. Emails are counted where they arrive, at the SMTP server.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use herald::clock::Clock;

use crate::helpers::*;

fn env(smtp: &SmtpServer) -> Env {
    let mut env = Env::new(smtp);
    env.set("HERALD__SCHEDULES__DUE_SOON__ENABLED", "true");
    env.set("HERALD__SCHEDULES__DUE_SOON__BEFORE", "30m");
    env.set("HERALD__SCHEDULES__DUE_SOON__CATCH_UP", "30m");
    env
}

/// Moves a task's due time in the demo app, as the app would when its user edits the task.
async fn move_task(app: &TestApp, title: &str, due: DateTime<Utc>) {
    let moved = sqlx::query("UPDATE herald_demo.tasks SET due_at = $1 WHERE title = $2")
        .bind(due)
        .bind(title)
        .execute(app.store.pg())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(moved, 1, "no task {title:?} to move");
}

/// The emails at the SMTP server, by the task title their subject names.
fn by_title(mail: &[Received]) -> HashMap<String, Vec<&Received>> {
    let mut out: HashMap<String, Vec<&Received>> = HashMap::new();
    for m in mail {
        let subject = m.subject();
        let title = subject.split_once(": ").map_or(subject.as_str(), |p| p.1);
        out.entry(title.to_owned()).or_default().push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_per_task_at_its_instant_across_midnight_an_outage_and_a_dst_change() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let start = at("2026-10-24T17:00:00Z");
    let clock = Clock::manual(start);
    let env = env(&smtp);
    let mut app = spawn_with_clock(env.clone(), clock.clone()).await;
    app.advance(start).await;

    // Kathmandu's midnight is 18:15 UTC; four tasks the same local day, two of them due at the
    // same minute and one 5 minutes later.
    app.add_user(
        "ktm@example.com",
        "Asia/Kathmandu",
        &[
            ("Call the bank", at("2026-10-24T18:25:00Z"), None), // 00:10 on the 25th
            ("Pay rent", at("2026-10-25T04:15:00Z"), None),      // 10:00
            ("Water the plants", at("2026-10-25T04:15:00Z"), None), // 10:00 too: one tick, two emails
            ("Send the report", at("2026-10-25T04:20:00Z"), None),  // 10:05
            ("Missed in the outage", at("2026-10-25T07:15:00Z"), None),
            ("Gym", at("2026-10-25T09:15:00Z"), None), // 15:00
            ("Done already", at("2026-10-25T05:00:00Z"), Some(start)),
        ],
    )
    .await;
    // Paris falls back at 01:00 UTC: 02:30 comes twice, at 00:30 and at 01:30 UTC.
    app.add_user(
        "paris@example.com",
        "Europe/Paris",
        &[
            ("First 02:30", at("2026-10-25T00:30:00Z"), None),
            ("Second 02:30", at("2026-10-25T01:30:00Z"), None),
            ("Late after the outage", at("2026-10-25T07:50:00Z"), None),
        ],
    )
    .await;
    // New York's midnight is 04:00 UTC.
    app.add_user(
        "ny@example.com",
        "America/New_York",
        &[
            ("Past midnight", at("2026-10-25T04:15:00Z"), None), // 00:15 on the 25th
            (
                "Moved before its reminder",
                at("2026-10-25T06:00:00Z"),
                None,
            ),
            ("Moved after its reminder", at("2026-10-25T05:00:00Z"), None),
        ],
    )
    .await;

    // The instants each task's email may go at, in order; the outage drops one.
    let mut expected: Vec<(&str, DateTime<Utc>)> = vec![
        ("Call the bank", at("2026-10-24T17:55:00Z")),
        ("First 02:30", at("2026-10-25T00:00:00Z")),
        ("Second 02:30", at("2026-10-25T01:00:00Z")),
        ("Pay rent", at("2026-10-25T03:45:00Z")),
        ("Water the plants", at("2026-10-25T03:45:00Z")),
        ("Past midnight", at("2026-10-25T03:45:00Z")),
        ("Send the report", at("2026-10-25T03:50:00Z")),
        ("Moved after its reminder", at("2026-10-25T04:30:00Z")),
        ("Late after the outage", at("2026-10-25T07:40:00Z")), // sent at the restart, 20 min late
        ("Moved before its reminder", at("2026-10-25T08:30:00Z")),
        ("Gym", at("2026-10-25T08:45:00Z")),
        ("Moved after its reminder", at("2026-10-25T09:30:00Z")),
    ];
    expected.sort_by_key(|e| e.1);

    let mut t = start;
    while t <= at("2026-10-25T10:00:00Z") {
        if t == at("2026-10-25T05:00:00Z") {
            // Edited after its reminder went: a new reminder for the new time.
            move_task(&app, "Moved after its reminder", at("2026-10-25T10:00:00Z")).await;
            // Edited before its reminder: one reminder, for the new time only.
            move_task(
                &app,
                "Moved before its reminder",
                at("2026-10-25T09:00:00Z"),
            )
            .await;
        }
        if t == at("2026-10-25T06:30:00Z") {
            // Herald is down from 06:30 to 07:40: "Missed in the outage" (06:45) is 55
            // minutes late at the restart, past the catch-up window of 30 minutes; "Late
            // after the outage" (07:20) is 20 minutes late and goes.
            app.owns_env = false;
            app.stop().await.unwrap();
            app.store.pg().close().await;
            drop(app);
            t = at("2026-10-25T07:40:00Z");
            clock.set(t);
            app = spawn_with_clock(env.clone(), clock.clone()).await;
        }
        app.advance(t).await;
        let due = expected.iter().filter(|e| e.1 <= t).count();
        let mail = smtp.wait_for(due, Duration::from_secs(30)).await;
        assert_eq!(
            mail.len(),
            due,
            "at {t}: {} emails, expected {:?}",
            mail.len(),
            expected.iter().filter(|e| e.1 <= t).collect::<Vec<_>>()
        );
        t += chrono::Duration::minutes(5);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mail = smtp.messages();
    let titles = by_title(&mail);
    for (title, _) in &expected {
        let want = expected.iter().filter(|e| e.0 == *title).count();
        let got = titles.get(*title).map_or(0, Vec::len);
        assert_eq!(got, want, "{title}: {got} emails, expected {want}");
    }
    assert_eq!(mail.len(), expected.len(), "{:?}", titles.keys());
    assert!(!titles.contains_key("Done already"));
    assert!(!titles.contains_key("Missed in the outage"));

    // The words are written when the email is sent, in the owner's zone: the one sent 20
    // minutes late says 10 minutes, not 30.
    let late = &titles["Late after the outage"][0];
    assert_eq!(late.subject(), "Due in 10 minutes: Late after the outage");
    let second = titles["Second 02:30"][0].part("text/plain").unwrap();
    assert!(
        second.contains("Due in 30 minutes (Sun 25 Oct, 02:30)."),
        "{second}"
    );
    let ktm = titles["Call the bank"][0].part("text/plain").unwrap();
    assert!(
        ktm.contains("Due in 30 minutes (Sun 25 Oct, 00:10)."),
        "{ktm}"
    );

    // What is left in PostgreSQL: one row per email, and the missed instant recorded as such.
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT dedup_key, status, last_error FROM deliveries WHERE kind = 'due_soon' ORDER BY planned_for",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len() + 1, "{rows:?}");
    let missed: Vec<_> = rows.iter().filter(|r| r.1 == "skipped").collect();
    assert_eq!(missed.len(), 1, "{rows:?}");
    assert!(
        missed[0]
            .2
            .as_deref()
            .is_some_and(|n| n.contains("outside the catch-up window of 30m")),
        "{missed:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.1 == "sent").count(),
        expected.len()
    );
    app.owns_env = true;
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_trigger_sends_the_reminders_current_at_its_instant_and_counts_say_what_happened()
{
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let now = at("2026-11-23T09:00:00Z");
    let app = spawn_with_clock(env(&smtp), Clock::manual(now)).await;
    app.advance(now).await;
    let id = app
        .add_user(
            "ada@example.com",
            "Europe/London",
            &[
                ("Soon", at("2026-11-23T09:20:00Z"), None),
                ("Later", at("2026-11-23T11:00:00Z"), None),
            ],
        )
        .await;
    let body = serde_json::json!({ "user_id": id.to_string() });
    let (status, report) = app.trigger("due_soon", body.clone()).await;
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["planned"], 1, "{report}");
    assert_eq!(report["already_planned"], 0, "{report}");
    let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mail[0].subject(), "Due in 20 minutes: Soon");
    // Again: the same reminder was planned before.
    let (_, again) = app.trigger("due_soon", body).await;
    assert_eq!(again["planned"], 0, "{again}");
    assert_eq!(again["already_planned"], 1, "{again}");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_morning_tells_each_open_task_once_at_eight_the_morning_after_in_the_owners_zone() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let start = at("2026-11-22T12:00:00Z");
    let mut env = Env::new(&smtp);
    env.set("HERALD__SCHEDULES__OVERDUE_MORNING__ENABLED", "true");
    let app = spawn_with_clock(env, Clock::manual(start)).await;
    app.advance(start).await;
    // Tokyo's 08:00 is 23:00 UTC; Los Angeles' is 16:00 UTC.
    app.add_user(
        "tokyo@example.com",
        "Asia/Tokyo",
        &[
            ("Evening task", at("2026-11-22T12:00:00Z"), None), // 21:00 on the 22nd
            ("Before eight", at("2026-11-23T22:30:00Z"), None), // 07:30 on the 24th
            ("Done in time", at("2026-11-22T13:00:00Z"), None),
        ],
    )
    .await;
    app.add_user(
        "la@example.com",
        "America/Los_Angeles",
        &[("Afternoon task", at("2026-11-22T22:00:00Z"), None)], // 14:00 on the 22nd
    )
    .await;
    let expected = [
        ("Evening task", at("2026-11-22T23:00:00Z")),
        ("Afternoon task", at("2026-11-23T16:00:00Z")),
        ("Before eight", at("2026-11-23T23:00:00Z")),
    ];
    let mut t = start + chrono::Duration::hours(1);
    while t <= at("2026-11-24T12:00:00Z") {
        if t == at("2026-11-22T20:00:00Z") {
            // Completed before its morning: nothing to tell.
            sqlx::query(
                "UPDATE herald_demo.tasks SET completed_at = $1 WHERE title = 'Done in time'",
            )
            .bind(t)
            .execute(app.store.pg())
            .await
            .unwrap();
        }
        app.advance(t).await;
        let due = expected.iter().filter(|e| e.1 <= t).count();
        let mail = smtp.wait_for(due, Duration::from_secs(30)).await;
        assert_eq!(mail.len(), due, "at {t}");
        t += chrono::Duration::hours(1);
    }
    let mail = smtp.messages();
    let titles = by_title(&mail);
    for (title, _) in expected {
        assert_eq!(
            titles.get(title).map_or(0, Vec::len),
            1,
            "{title}: {titles:?}"
        );
    }
    assert_eq!(mail.len(), expected.len());
    let evening = titles["Evening task"][0].part("text/plain").unwrap();
    assert!(
        evening.contains("It was due yesterday at 21:00 (Sun 22 Nov, 21:00) and is still open."),
        "{evening}"
    );
    let planned: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT planned_for FROM deliveries WHERE kind = 'overdue_morning' ORDER BY planned_for",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    assert_eq!(planned, expected.map(|e| e.1));
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_tasks_falling_due_in_one_tick_are_read_in_pages_and_each_told_once() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let start = at("2026-11-23T09:00:00Z");
    let app = spawn_with_clock(env(&smtp), Clock::manual(start)).await;
    app.advance(start).await;
    let owners = app
        .store
        .insert_users(
            &(0..3)
                .map(|i| NewUser {
                    email: format!("many{i}@example.com"),
                    display_name: format!("Many {i}"),
                    timezone: "UTC".into(),
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // 1,500 tasks due at one instant (ties across the pages of 1,000) and 1,000 a second apart.
    let same = at("2026-11-23T09:40:00Z");
    let tasks: Vec<NewTask> = (0..2_500)
        .map(|i| NewTask {
            owner_id: owners[i % 3],
            title: format!("Task {i}"),
            due_at: Some(if i < 1_500 {
                same
            } else {
                same + chrono::Duration::seconds(i as i64 - 1_499)
            }),
            completed_at: None,
        })
        .collect();
    app.store.insert_tasks(&tasks).await.unwrap();

    // Every instant (due less 30 minutes) falls in this one tick.
    app.advance(at("2026-11-23T09:30:00Z")).await;
    let mail = smtp.wait_for(2_500, Duration::from_secs(60)).await;
    assert_eq!(mail.len(), 2_500);
    let (rows, keys): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT dedup_key) FROM deliveries WHERE kind = 'due_soon'",
    )
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    assert_eq!((rows, keys), (2_500, 2_500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.count(), 2_500, "an email went twice");
    drop(smtp);
    app.finish().await;
}
