//! On time, in the recipient's time: a simulated day across five zones, missed fires after a
//! restart, and three processes planning the same schedules.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use herald::clock::Clock;

use crate::helpers::*;

const ZONES: [&str; 5] = [
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
];

/// Reminders on, every other schedule off; the planner wakes on nudges from the test.
fn reminders_env(smtp: &SmtpServer) -> Env {
    let mut env = Env::new(smtp);
    env.set("HERALD__SCHEDULES__TASK_REMINDERS__ENABLED", "true");
    env
}

fn local(zone: &str, date: &str, h: u32, m: u32) -> DateTime<Utc> {
    let tz: Tz = zone.parse().unwrap();
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    tz.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// Adds one user per zone with a task due at noon on `due_date`, their local calendar.
async fn users_in_zones(app: &TestApp, due_date: &str) -> HashMap<String, &'static str> {
    let mut by_email = HashMap::new();
    for (i, zone) in ZONES.iter().enumerate() {
        let email = format!("z{i}@example.com");
        app.add_user(
            &email,
            zone,
            &[("Water the plants", local(zone, due_date, 12, 0), None)],
        )
        .await;
        by_email.insert(email, *zone);
    }
    by_email
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_simulated_day_each_user_gets_one_reminder_at_their_own_nine() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let clock = Clock::manual(at("2026-11-19T10:00:00Z"));
    let app = spawn_with_clock(reminders_env(&smtp), clock).await;
    let users = users_in_zones(&app, "2026-11-21").await;
    let fires: HashMap<&str, DateTime<Utc>> = ZONES
        .iter()
        .map(|z| (*z, local(z, "2026-11-20", 9, 0)))
        .collect();

    // Walk the day in 15-minute steps (every zone's 09:00 falls on one, Kolkata's too).
    let mut t = at("2026-11-19T10:00:00Z");
    app.advance(t).await;
    while t <= at("2026-11-20T18:00:00Z") {
        app.advance(t).await;
        let due: Vec<&str> = ZONES.iter().copied().filter(|z| fires[z] <= t).collect();
        app.wait_for_status("sent", due.len() as i64, Duration::from_secs(30))
            .await;
        let mail = smtp.wait_for(due.len(), Duration::from_secs(30)).await;
        assert_eq!(
            mail.len(),
            due.len(),
            "at {t}: {} emails, expected {due:?}",
            mail.len()
        );
        for m in &mail {
            let zone = users[m.to()];
            assert!(
                fires[zone] <= t,
                "{zone} got its reminder before its 09:00 ({t})"
            );
        }
        t += chrono::Duration::minutes(15);
    }
    let mail = smtp.messages();
    assert_eq!(mail.len(), 5);
    // Each email was planned for the instant of its user's local 09:00, and says "Saturday".
    let planned: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT recipient, planned_for FROM deliveries")
            .fetch_all(app.store.pg())
            .await
            .unwrap();
    for (email, planned_for) in planned {
        assert_eq!(planned_for, fires[users[&email]], "{email}");
    }
    for m in &mail {
        let text = m.part("text/plain").unwrap();
        assert!(
            text.contains("Saturday 21 November 2026") && text.contains("at 12:00"),
            "{text}"
        );
    }
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_at_0940_sends_what_was_missed_and_one_at_1100_records_it_as_skipped() {
    skip_without_servers!();
    for (restart, sent) in [
        ("2026-11-20T09:40:00Z", true),
        ("2026-11-20T11:00:00Z", false),
    ] {
        let smtp = SmtpServer::start().await;
        let env = reminders_env(&smtp);
        let clock = Clock::manual(at("2026-11-20T08:50:00Z"));
        let mut first = spawn_with_clock(env.clone(), clock.clone()).await;
        first
            .add_user(
                "utc@example.com",
                "UTC",
                &[("File the expenses", at("2026-11-21T10:00:00Z"), None)],
            )
            .await;
        first.advance(at("2026-11-20T08:50:00Z")).await;
        // Herald stops before 09:00...
        first.owns_env = false;
        first.stop().await.unwrap();
        drop(first);

        // ...and starts again later.
        clock.set(at(restart));
        let second = spawn_with_clock(env, clock).await;
        second.advance(at(restart)).await;
        if sent {
            let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
            assert_eq!(mail[0].to(), "utc@example.com");
            second
                .wait_for_status("sent", 1, Duration::from_secs(10))
                .await;
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(smtp.count(), 0);
            let (status, note): (String, String) =
                sqlx::query_as("SELECT status, last_error FROM deliveries")
                    .fetch_one(second.store.pg())
                    .await
                    .unwrap();
            assert_eq!(status, "skipped");
            assert!(
                note.contains("2026-11-20 09:00 UTC")
                    && note.contains("outside the catch-up window of 1h"),
                "{note}"
            );
        }
        drop(smtp);
        second.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_plan_one_email_per_user() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = reminders_env(&smtp);
    let clock = Clock::manual(at("2026-11-19T18:00:00Z"));
    let mut apps = Vec::new();
    for i in 0..3 {
        let mut app = spawn_with_clock(env.clone(), clock.clone()).await;
        app.owns_env = i == 0;
        apps.push(app);
    }
    let users = users_in_zones(&apps[0], "2026-11-21").await;
    // Every process wakes at every step, racing for the same fires.
    let mut t = at("2026-11-19T18:00:00Z");
    while t <= at("2026-11-20T18:00:00Z") {
        futures::future::join_all(apps.iter().map(|a| a.advance(t))).await;
        t += chrono::Duration::hours(1);
    }
    apps[0]
        .wait_for_status("sent", 5, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mail = smtp.messages();
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for m in &mail {
        *per_user.entry(m.to()).or_default() += 1;
    }
    assert_eq!(per_user.len(), users.len(), "{per_user:?}");
    assert!(per_user.values().all(|&n| n == 1), "{per_user:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(apps[0].store.pg())
        .await
        .unwrap();
    assert_eq!(rows, 5);
    drop(smtp);
    for app in apps.into_iter().rev() {
        app.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_an_invalid_zone_gets_the_fallback_and_the_others_are_not_held_up() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = reminders_env(&smtp);
    env.set(
        "HERALD__SCHEDULES__TASK_REMINDERS__FALLBACK_TIMEZONE",
        "Europe/London",
    );
    let clock = Clock::manual(at("2026-11-20T07:00:00Z"));
    let app = spawn_with_clock(env, clock).await;
    app.add_user(
        "mars@example.com",
        "Mars/Olympus_Mons",
        &[("Terraform", at("2026-11-21T12:00:00Z"), None)],
    )
    .await;
    app.add_user(
        "paris@example.com",
        "Europe/Paris",
        &[("Croissants", at("2026-11-21T12:00:00Z"), None)],
    )
    .await;
    app.advance(at("2026-11-20T07:00:00Z")).await;
    // 09:00 in Paris is 08:00 UTC: Paris is planned, the invalid zone is not held up by it...
    app.advance(at("2026-11-20T08:00:00Z")).await;
    let mail = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mail[0].to(), "paris@example.com");
    // ...and the user with an invalid zone gets 09:00 in the fallback zone (London, 09:00 UTC).
    app.advance(at("2026-11-20T09:00:00Z")).await;
    let mail = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mail[1].to(), "mars@example.com");
    let planned_for: DateTime<Utc> = sqlx::query_scalar(
        "SELECT planned_for FROM deliveries WHERE recipient = 'mars@example.com'",
    )
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    assert_eq!(planned_for, at("2026-11-20T09:00:00Z"));
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_schedules_shows_the_next_emails_in_local_time_and_utc() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let id = app.add_user("ktm@example.com", "Asia/Kathmandu", &[]).await;
    let out = herald_ok(&app.env, &["schedules", "--user", &id.to_string()]);
    assert!(out.contains("time zone Asia/Kathmandu"), "{out}");
    // 09:00 in Kathmandu is 03:15 UTC; the weekly report is Sunday 17:00, 11:15 UTC.
    assert!(
        out.contains("09:00 +0545 (+05:45)  =  ") && out.contains("03:15 UTC"),
        "{out}"
    );
    assert!(
        out.contains("Sun ") && out.contains("17:00 +0545") && out.contains("11:15 UTC"),
        "{out}"
    );

    let out = herald_ok(&app.env, &["schedules"]);
    for expected in [
        "task_reminders  cron \"0 0 9 * * *\"  zone recipient  catch-up 1h",
        "planned up to:",
        "next: ",
    ] {
        assert!(out.contains(expected), "{out}");
    }
    drop(smtp);
    app.finish().await;
}
