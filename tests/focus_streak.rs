//! The `focus_streak` kind end to end: at 20:00 in each user's zone, one email to each user who
//! focused that day, with the day's minutes and the streak of local days with a session.

#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
// The harness's two homes, which it names.
#[path = "api/homes.rs"]
mod homes;

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use herald::clock::Clock;

use helpers::*;

fn local(zone: &str, date: &str, h: u32, m: u32) -> DateTime<Utc> {
    let tz: Tz = zone.parse().unwrap();
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    tz.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_eight_pm_local_each_user_who_focused_gets_their_day_and_streak_once() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__SCHEDULES__FOCUS_STREAK__ENABLED", "true");
    let clock = Clock::manual(at("2026-11-23T00:00:00Z"));
    let app = spawn_with_clock(env, clock).await;
    app.advance(at("2026-11-23T00:00:00Z")).await;

    let day = "2026-11-23";
    let paris = |date: &str, h| local("Europe/Paris", date, h, 0);
    let tokyo = |date: &str, h, m| local("Asia/Tokyo", date, h, m);
    let mut sessions = Vec::new();
    // Paris: twice today and on each of the two days before; nothing three days ago, so the
    // session four days ago is not part of the streak.
    let streak = app.add_user("paris@example.com", "Europe/Paris", &[]).await;
    for (date, h, minutes) in [
        (day, 9, 25),
        (day, 15, 50),
        ("2026-11-22", 10, 30),
        ("2026-11-21", 10, 30),
        ("2026-11-19", 10, 30),
    ] {
        sessions.push((streak, paris(date, h), minutes));
    }
    // Tokyo: today, and yesterday at 23:30 local, which is still "today" in UTC.
    let tokyo_id = app.add_user("tokyo@example.com", "Asia/Tokyo", &[]).await;
    sessions.push((tokyo_id, tokyo(day, 9, 0), 40));
    sessions.push((tokyo_id, tokyo("2026-11-22", 23, 30), 20));
    // UTC: a session every day for 40 days, longer than one query looks back.
    let marathon = app.add_user("marathon@example.com", "UTC", &[]).await;
    for n in 0..40 {
        sessions.push((
            marathon,
            at("2026-11-23T12:00:00Z") - chrono::Duration::days(n),
            10,
        ));
    }
    // Focused yesterday only: nothing to say today.
    let idle = app.add_user("idle@example.com", "Europe/Paris", &[]).await;
    sessions.push((idle, paris("2026-11-22", 10), 30));
    // Focused today but opted out of this kind.
    let quiet = app.add_user("quiet@example.com", "Europe/Paris", &[]).await;
    sessions.push((quiet, paris(day, 10), 30));
    app.store
        .opt_out(&quiet.to_string(), "focus_streak")
        .await
        .unwrap();
    app.store.insert_focus_sessions(&sessions).await.unwrap();

    // Each zone's 20:00, in the order they come.
    let fires = [
        ("tokyo@example.com", tokyo(day, 20, 0)),
        ("paris@example.com", paris(day, 20)),
        ("marathon@example.com", at("2026-11-23T20:00:00Z")),
    ];
    for (_, t) in fires {
        app.advance(t).await;
    }
    app.advance(at("2026-11-23T23:00:00Z")).await;
    app.wait_for_status("sent", 3, Duration::from_secs(30))
        .await;
    let mail = smtp.wait_for(3, Duration::from_secs(30)).await;

    // Exactly one email per user who focused, planned for their own 20:00.
    let mut per_recipient: HashMap<&str, usize> = HashMap::new();
    for m in &mail {
        *per_recipient.entry(m.to()).or_default() += 1;
    }
    assert_eq!(
        per_recipient,
        HashMap::from([
            ("paris@example.com", 1),
            ("tokyo@example.com", 1),
            ("marathon@example.com", 1)
        ]),
        "{mail:?}"
    );
    let planned: HashMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT recipient, planned_for FROM deliveries",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(planned.len(), 3, "{planned:?}");
    for (email, t) in fires {
        assert_eq!(planned[email], t, "{email}");
    }

    let text = |email: &str| {
        let m = mail.iter().find(|m| m.to() == email).unwrap();
        (m.header("Subject").unwrap(), m.part("text/plain").unwrap())
    };
    let (subject, body) = text("paris@example.com");
    assert_eq!(subject, "75 minutes of focus today: 3 days in a row");
    assert!(
        body.contains("Today, Monday 23 November 2026, you focused for 75 minutes in 2 sessions.")
            && body.contains("That makes 3 days in a row"),
        "{body}"
    );
    let (subject, body) = text("tokyo@example.com");
    assert_eq!(subject, "40 minutes of focus today: 2 days in a row");
    assert!(body.contains("in 1 session."), "{body}");
    let (subject, _) = text("marathon@example.com");
    assert_eq!(subject, "10 minutes of focus today: 40 days in a row");

    drop(smtp);
    app.finish().await;
}
