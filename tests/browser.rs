//! The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, with fantoccini), against a running Herald with real deliveries and a real SMTP
//! server. It logs in, filters the failed set to one error class, retries one delivery and sees
//! it sent; requests without the cookie or without the CSRF token are refused. Each page's
//! screenshot goes to `target/screenshots/`.
//!
//! Without `chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`) the
//! browser test prints a loud message and passes, unless `HERALD_REQUIRE_BROWSER=1` (CI sets it).
//! Without PostgreSQL or Redis every test here is skipped as loudly, unless
//! `HERALD_REQUIRE_SERVERS=1` (tests/support/shared_servers.rs).

#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
// The harness's two homes, which it names.
#[path = "api/homes.rs"]
mod homes;

#[path = "browser/chromium.rs"]
mod chromium;
#[path = "browser/operators.rs"]
mod operators;

use std::time::Duration;

use chromium::*;
use fantoccini::Locator;
use helpers::{Env, SmtpServer, TOKEN, spawn_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_filters_the_failed_set_retries_one_and_sees_it_sent() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    // gone@ refuses once (550 for policy: permanent, and not a refusal of the mailbox, which
    // would suppress the address), flaky@ answers 451 to every try (transient, failed after its
    // retries), ok@ accepts.
    smtp.script(&[
        ("gone@example.com", &["550 5.7.1 No such user here"]),
        ("flaky@example.com", &["451 a", "451 b", "451 c", "451 d"]),
    ]);
    let mut env = Env::new(&smtp);
    env.set(
        "HERALD__QUEUE__RETRY_DELAYS",
        r#"["100ms", "100ms", "100ms"]"#,
    );
    let app = spawn_with(env).await;
    for email in ["gone@example.com", "flaky@example.com", "ok@example.com"] {
        app.add_late_user(email).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 2, Duration::from_secs(60))
        .await;
    smtp.wait_for(1, Duration::from_secs(30)).await;
    let gone: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE recipient = 'gone@example.com'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();
    let flaky: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE recipient = 'flaky@example.com'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    let base = &app.address;

    // Not logged in: the overview sends the browser to the login form.
    c.goto(&format!("{base}/ui")).await.unwrap();
    c.wait().for_element(Locator::Css("#token")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shot(&c, "login").await;
    fill(&c, "#token", "not the token").await;
    click(&c, "#login").await;
    assert!(
        text(&c, "#login-error")
            .await
            .contains("not HERALD_API_TOKEN")
    );
    fill(&c, "#token", TOKEN).await;
    click(&c, "#login").await;

    // The overview: one sent, two failed in the last hour, and the SMTP provider sending.
    assert_eq!(text(&c, "#sent-hour").await, "1");
    assert_eq!(text(&c, "#failed-hour").await, "2");
    let providers = text(&c, "#providers").await;
    assert!(
        providers.contains("smtp") && providers.contains("sending"),
        "{providers}"
    );
    assert!(text(&c, "#schedules").await.contains("overdue_summary"));
    shot(&c, "overview").await;

    // The failed set, filtered to one error class.
    c.goto(&format!("{base}/ui/failed")).await.unwrap();
    assert!(text(&c, "#count").await.starts_with("2 failed"));
    c.find(Locator::Css("#f-class"))
        .await
        .unwrap()
        .select_by_value("permanent")
        .await
        .unwrap();
    click(&c, "#apply").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !c
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|q| q.contains("class=permanent"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the filter did not apply"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text(&c, "#count").await.starts_with("1 failed"));
    let table = text(&c, "#failed").await;
    assert!(
        table.contains("gone@example.com") && !table.contains("flaky@example.com"),
        "{table}"
    );
    shot(&c, "failed").await;

    // Retry it; the SMTP server accepts this time.
    click(&c, &format!("#retry-{gone}")).await;
    let done = text(&c, "#done").await;
    assert!(done.contains("queued 1 again"), "{done}");
    let received = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert!(received.iter().any(|m| m.to() == "gone@example.com"));

    // The delivery page says sent, with both attempts and the rendered email.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        c.goto(&format!("{base}/ui/deliveries/{gone}"))
            .await
            .unwrap();
        if text(&c, "#status").await == "sent" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery {gone} is not sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attempts = text(&c, "#attempts").await;
    assert!(
        attempts.contains("permanent") && attempts.contains("550") && attempts.contains("sent"),
        "{attempts}"
    );
    assert!(!text(&c, "#subject").await.is_empty());
    c.find(Locator::Css("iframe.email")).await.unwrap();
    shot(&c, "delivery").await;

    // Search, schedules and a dry run (nothing is queued by it).
    c.goto(&format!("{base}/ui/deliveries?q=gone%40example.com"))
        .await
        .unwrap();
    assert!(text(&c, "#results").await.contains(&gone.to_string()));
    shot(&c, "search").await;
    c.goto(&format!("{base}/ui/schedules")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#dry-run-overdue_summary"))
        .await
        .unwrap();
    shot(&c, "schedules").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    click(&c, "#dry-run-overdue_summary").await;
    let report = text(&c, "#plan-report").await;
    assert!(report.contains("3 would be sent"), "{report}");
    assert!(text(&c, "#recipients").await.contains("ok@example.com"));
    shot(&c, "dry-run").await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(before, after, "a dry run queues nothing");

    // Without the cookie, or with it but without the CSRF token, a POST is refused.
    let session = c
        .get_named_cookie("herald_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = format!("action=retry%3A{flaky}");
    let r = http
        .post(format!("{base}/ui/failed"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{form}&csrf=whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no cookie");
    for body in [form.clone(), format!("{form}&csrf=0123abcd")] {
        let r = http
            .post(format!("{base}/ui/failed"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("herald_session={session}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    let r = http.get(format!("{base}/ui/failed")).send().await.unwrap();
    assert_eq!(
        r.status(),
        303,
        "a GET without the cookie goes to the login form"
    );
    assert_eq!(r.headers()["location"], "/ui/login");
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1")
        .bind(flaky)
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(status, "failed", "the refused retries changed nothing");

    // Logging out ends the session in the browser.
    c.goto(&format!("{base}/ui")).await.unwrap();
    click(&c, "header form button").await;
    c.wait().for_element(Locator::Css("#token")).await.unwrap();

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_closed_without_a_token() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_API_TOKEN", "");
    let app = spawn_with(env).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/ui", "/ui/login", "/ui/failed"] {
        let r = http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.text().await.unwrap().contains("set HERALD_API_TOKEN"));
    }
    let r = http
        .post(format!("{}/ui/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_retry_spreads_the_failures_at_the_configured_rate() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    smtp.script(&[("*", &["550 5.1.1 No such user here"; 12])]);
    let mut env = Env::new(&smtp);
    env.set("HERALD__UI__RETRY_PER_SECOND", "2");
    let app = spawn_with(env).await;
    for i in 0..6 {
        app.add_late_user(&format!("u{i}@example.com")).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 6, Duration::from_secs(60))
        .await;
    // What the retry wrote, not what was sent since: the workers fail them again meanwhile.
    let c = login(&app.address).await;
    let r = c
        .http
        .post(format!("{}/ui/failed", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &c.cookie)
        .body(format!("action=retry_all&csrf={}", c.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("queued+6+again"), "{location}");
    // Two per second: due at +0, +0, +1, +1, +2, +2 seconds from the first.
    let offsets: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM due_at - min(due_at) OVER ())::float8 FROM deliveries ORDER BY due_at, id",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    assert_eq!(offsets, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_button_keeps_the_apis_rules_and_a_purge_wants_confirming() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    smtp.script(&[("gone@example.com", &["550 5.1.1 No such user here"])]);
    let app = spawn_with(Env::new(&smtp)).await;
    app.add_late_user("gone@example.com").await;
    let c = login(&app.address).await;
    let post = |path: &str, body: String| {
        c.http
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &c.cookie)
            .body(body)
            .send()
    };
    let count = |sql: &'static str| {
        let pool = app.store.pg().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let csrf = &c.csrf;
    let trigger = "/ui/schedules/overdue_summary/trigger";

    // A future instant is refused unless it is a dry run; nothing is queued either way.
    let r = post(trigger, format!("csrf={csrf}&at=2099-01-01T00%3A00"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is in the future"));
    let r = post(
        "/ui/schedules/overdue_summary/dry-run",
        format!("csrf={csrf}&at=2099-01-01T00%3A00"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("gone@example.com"));
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    // Without the CSRF token, nothing either.
    let r = post(trigger, "at=2026-11-23T07%3A00".into()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    let r = post("/ui/schedules/nope/trigger", format!("csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A trigger for everyone asks first, and queues nothing until confirmed.
    let r = post(trigger, format!("csrf={csrf}&at=2026-11-23T07%3A00"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("id=\"confirm-trigger\"") && page.contains("Send 1 emails now"),
        "{page}"
    );
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    // Confirmed, it is a test send, keyed manual:, and twice is once.
    for _ in 0..2 {
        let r = post(
            trigger,
            format!("csrf={csrf}&at=2026-11-23T07%3A00&confirm=yes"),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count("SELECT count(*) FROM deliveries WHERE dedup_key LIKE 'manual:overdue_summary:%'")
            .await,
        1
    );
    app.wait_for_status("failed", 1, Duration::from_secs(60))
        .await;

    // A purge needs its confirmation tick.
    let r = post("/ui/failed", format!("csrf={csrf}&action=purge_all"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.count_status("failed").await, 1);
    let r = post(
        "/ui/failed",
        format!("csrf={csrf}&action=purge_all&confirm=yes&class=permanent"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("purged+1")
    );
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    drop(smtp);
    app.finish().await;
}
