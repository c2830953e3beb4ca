//! `GET /metrics`: a fire with sent, retried and permanently failed emails, scraped and parsed as
//! Prometheus text, and every counter checked against the deliveries in the state: in both homes.

use std::{collections::BTreeMap, time::Duration};

use herald::clock::Clock;
use prometheus_parse::{Sample, Scrape, Value};

use crate::helpers::*;

/// A sample's value, whatever type the parser gave it (OpenMetrics names a counter's samples
/// `…_total`, which the parser does not match with the counter's `# TYPE` line).
fn number(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a number: {other:?}", s.metric),
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).unwrap_or("")
}

/// The sum of `metric`'s samples, grouped by the values of `labels`, zeros left out.
fn by(scrape: &Scrape, metric: &str, labels: &[&str]) -> BTreeMap<Vec<String>, i64> {
    let mut sums = BTreeMap::new();
    for s in scrape.samples.iter().filter(|s| s.metric == metric) {
        let key = labels.iter().map(|l| label(s, l).to_owned()).collect();
        *sums.entry(key).or_insert(0.0) += number(s);
    }
    sums.into_iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(k, v)| (k, v as i64))
        .collect()
}

/// The one sample of `metric` whose labels include all of `labels`.
fn one(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| label(s, k) == *v))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    number(found[0])
}

/// Rows of a grouping query, its labels joined by `|` in the first column, as the same map as
/// [`by`].
async fn rows(app: &TestApp, sql: &'static str) -> BTreeMap<Vec<String>, i64> {
    let rows: Vec<(String, i64)> = app.store.sql_rows(sql, &[]).await;
    rows.into_iter()
        .map(|(labels, n)| (labels.split('|').map(str::to_owned).collect(), n))
        .collect()
}

async fn scrape(app: &TestApp) -> Scrape {
    let r = app
        .http
        .get(format!("{}/metrics", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

async fn the_counters_match_the_deliveries_of_a_fire_with_mixed_outcomes(home: Home) {
    let smtp = SmtpServer::start().await;
    smtp.script(&[
        ("gone1@example.com", &["550 5.1.1 No such user here"]),
        ("gone2@example.com", &["554 5.7.1 Rejected"]),
        (
            "flaky@example.com",
            &["451 4.7.1 Try again later", "accept"],
        ),
    ]);
    let mut env = home.env(&smtp);
    env.set("HERALD__SCHEDULES__OVERDUE_SUMMARY__ENABLED", "true");
    env.set(
        "HERALD__SCHEDULES__OVERDUE_SUMMARY__FALLBACK_TIMEZONE",
        "UTC",
    );
    env.set("HERALD__QUEUE__RETRY_DELAYS", "[\"100ms\"]");
    let clock = Clock::manual(at("2026-11-23T06:59:00Z"));
    let app = spawn_with_clock(env, clock).await;
    for user in [
        "ok1@example.com",
        "ok2@example.com",
        "ok3@example.com",
        "gone1@example.com",
        "gone2@example.com",
        "flaky@example.com",
    ] {
        app.add_late_user(user).await;
    }
    // Nothing overdue: skipped. A zone that is no zone: planned in the fallback zone.
    app.add_user("quiet@example.com", "UTC", &[]).await;
    app.add_user(
        "mars@example.com",
        "Mars/Olympus_Mons",
        &[("Late", at(LATE), None)],
    )
    .await;

    // The scrape asks for the token, as the API does.
    let r = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The first round only sets the watermark; 07:00 UTC is the fire.
    app.advance(at("2026-11-23T06:59:00Z")).await;
    app.advance(at("2026-11-23T07:00:00Z")).await;
    // The retry is due 100 ms after the clock's 07:00: once it is recorded, move the clock on so
    // that the dispatcher sees it due.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app
        .store
        .sql_scalar::<i64>(
            "SELECT count(*) FROM delivery_attempts WHERE outcome = 'transient'",
            &[],
        )
        .await
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no transient try");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.clock.set(at("2026-11-23T07:01:00Z"));
    app.wait_for_status("sent", 5, Duration::from_secs(60))
        .await;
    app.wait_for_status("failed", 2, Duration::from_secs(60))
        .await;

    // A counter moves right after its row is committed: scrape until it has caught up (the
    // bound only stops a hung test).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = scrape(&app).await;
        let sent: i64 = by(&m, "herald_emails_sent_total", &[]).values().sum();
        let failed: i64 = by(&m, "herald_emails_failed_total", &[]).values().sum();
        if (sent, failed) == (5, 2) {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the counters say {sent} sent and {failed} failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Sent and failed, by kind and provider, as PostgreSQL has them.
    assert_eq!(
        by(&m, "herald_emails_sent_total", &["kind", "provider"]),
        rows(
            &app,
            "SELECT kind || '|' || provider, count(*) FROM deliveries WHERE status = 'sent' GROUP BY 1"
        )
        .await
    );
    assert_eq!(
        by(&m, "herald_emails_failed_total", &["kind", "provider"]),
        rows(
            &app,
            "SELECT kind || '|' || provider, count(*) FROM deliveries WHERE status = 'failed' GROUP BY 1"
        )
        .await
    );
    // Every try, by provider and outcome, as delivery_attempts has them.
    assert_eq!(
        by(
            &m,
            "herald_send_attempts_total",
            &["kind", "provider", "outcome"]
        ),
        rows(
            &app,
            "SELECT d.kind || '|' || a.provider || '|' || a.outcome, count(*)
             FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id GROUP BY 1"
        )
        .await
    );
    // The failed ones were permanent; the one retry was transient.
    assert_eq!(
        by(&m, "herald_emails_failed_total", &["class"]),
        BTreeMap::from([(vec!["permanent".to_owned()], 2)])
    );
    assert_eq!(
        by(&m, "herald_emails_retried_total", &["class"]),
        BTreeMap::from([(vec!["transient".to_owned()], 1)])
    );
    // Every class of the taxonomy is listed, also those that did not happen.
    for class in herald::metrics::error_classes() {
        one(
            &m,
            "herald_send_attempts_total",
            &[
                ("kind", "overdue_summary"),
                ("provider", "smtp"),
                ("outcome", class),
            ],
        );
    }
    // Each sent email's lag was observed once; each was sent once.
    let sent = app.count_status("sent").await;
    assert_eq!(
        one(
            &m,
            "herald_delivery_lag_seconds_count",
            &[("kind", "overdue_summary")]
        ),
        sent as f64
    );
    assert_eq!(smtp.count() as i64, sent);

    // The fire: planned, skipped, the invalid zone, when.
    let schedule = [("schedule", "overdue_summary")];
    let planned: i64 = app
        .store
        .sql_scalar("SELECT count(*) FROM deliveries", &[])
        .await;
    assert_eq!(
        one(
            &m,
            "herald_planned_total",
            &[("schedule", "overdue_summary"), ("trigger", "schedule")]
        ),
        planned as f64
    );
    assert_eq!(planned, 7);
    assert_eq!(
        one(
            &m,
            "herald_plan_skipped_total",
            &[
                ("schedule", "overdue_summary"),
                ("reason", "nothing_to_say")
            ]
        ),
        1.0
    );
    assert_eq!(one(&m, "herald_invalid_timezones_total", &schedule), 1.0);
    assert_eq!(one(&m, "herald_schedule_fires_total", &schedule), 1.0);
    assert_eq!(
        one(&m, "herald_schedule_last_fire_timestamp_seconds", &schedule),
        at("2026-11-23T07:00:00Z").timestamp() as f64
    );
    assert!(
        one(&m, "herald_schedule_watermark_timestamp_seconds", &schedule)
            >= at("2026-11-23T07:00:00Z").timestamp() as f64
    );

    // The gauges read at scrape time. What each home names its dependencies is its own.
    let up: Vec<_> = m
        .samples
        .iter()
        .filter(|s| s.metric == "herald_up")
        .collect();
    assert!(
        !up.is_empty() && up.iter().all(|s| number(s) == 1.0),
        "{up:?}"
    );
    if home == Home::Servers {
        assert_eq!(one(&m, "herald_up", &[("dependency", "postgres")]), 1.0);
        assert_eq!(one(&m, "herald_up", &[("dependency", "redis")]), 1.0);
    }
    assert_eq!(
        one(&m, "herald_deliveries_failed", &[]),
        app.count_status("failed").await as f64
    );
    assert_eq!(one(&m, "herald_deliveries_in_flight", &[]), 0.0);
    assert_eq!(
        one(
            &m,
            "herald_provider_state",
            &[("provider", "smtp"), ("state", "ok")]
        ),
        1.0
    );
    drop(smtp);
    app.finish().await;
}

async fn without_a_token_the_scrape_is_open_and_the_api_closed(home: Home) {
    let smtp = SmtpServer::start().await;
    let mut env = home.env(&smtp);
    env.vars.retain(|(k, _)| k != "HERALD_API_TOKEN");
    let app = spawn_with(env).await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.address)).send();
    let r = get("/metrics").await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("herald_up{"), "{text}");
    if home == Home::Servers {
        assert!(text.contains("herald_up{dependency=\"redis\"} 1"), "{text}");
    }
    assert_eq!(get("/api/stats").await.unwrap().status(), 403);
    drop(smtp);
    app.finish().await;
}

in_both_homes!(
    the_counters_match_the_deliveries_of_a_fire_with_mixed_outcomes,
    without_a_token_the_scrape_is_open_and_the_api_closed,
);
