//! The operator's pages in a real browser: the unsubscribe page an email links to, the
//! suppression list, pausing a schedule, browsing deliveries by status and retrying from a
//! delivery's page.

use std::time::Duration;

use fantoccini::Locator;

use crate::{
    chromium::*,
    helpers::{Env, SmtpServer, TOKEN, spawn_with},
};

/// The page an email's unsubscribe link opens, in a real browser: it shows the buttons and
/// changes nothing until one is pressed; the first opts the user out of that kind only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_page_opts_out_of_one_kind_when_its_button_is_pressed() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_PUBLIC_URL", "https://herald.example.com");
    env.set(
        "HERALD_UNSUBSCRIBE_KEY",
        "browser-unsubscribe-key-0123456789abcdef",
    );
    let app = spawn_with(env).await;
    let ada = app.add_late_user("ada@example.com").await.to_string();
    let links = herald::unsubscribe::Links::from_settings(&app.env.settings()).unwrap();
    let link = links.url(&ada, "weekly_report", chrono::Utc::now());
    let path = link.strip_prefix("https://herald.example.com").unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    c.goto(&format!("{}{path}", app.address)).await.unwrap();
    let page = text(&c, "body").await;
    assert!(
        page.contains("Stop getting emails about tasks completed"),
        "{page}"
    );
    shot(&c, "unsubscribe").await;
    assert!(
        app.store.opt_outs(&ada).await.unwrap().is_empty(),
        "a GET opted out"
    );

    click(&c, "#this-kind").await;
    c.wait()
        .for_element(Locator::XPath("//h1[text()='Unsubscribed']"))
        .await
        .expect("the page after the button says Unsubscribed");
    assert_eq!(app.store.opt_outs(&ada).await.unwrap(), ["weekly_report"]);

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}

/// The suppression list on the dashboard: listed with its reason and the rates, lifted with
/// the row's button (a form with the session's CSRF token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_suppressed_address_and_lifts_it() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_with(Env::new(&smtp)).await;
    app.store
        .suppress(
            "Gone@Example.com",
            "bounced",
            "smtp 550 5.1.1",
            Some("550 5.1.1 User unknown"),
            None,
        )
        .await
        .unwrap();
    let base = &app.address;
    let s = login(base).await;
    let page = s.page(&format!("{base}/ui/suppressions")).await;
    assert!(page.contains("gone@example.com"), "{page}");
    assert!(
        page.contains("smtp 550 5.1.1") && page.contains("24 hours"),
        "{page}"
    );
    // The overview shows the same rates table.
    let overview = s.page(&format!("{base}/ui")).await;
    assert!(
        overview.contains("Bounces and complaints") && overview.contains("<td>7 days</td>"),
        "{overview}"
    );

    // Without the CSRF token: refused, nothing lifted.
    let r = s
        .post_form(
            &format!("{base}/ui/suppressions"),
            "address=gone%40example.com".into(),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(
        app.store
            .suppression("gone@example.com")
            .await
            .unwrap()
            .is_some()
    );

    let r = s
        .post_form(
            &format!("{base}/ui/suppressions"),
            format!("csrf={}&address=gone%40example.com", s.csrf),
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/suppressions?lifted=gone%40example.com"
    );
    assert!(
        app.store
            .suppression("gone@example.com")
            .await
            .unwrap()
            .is_none()
    );
    drop(smtp);
    app.finish().await;
}

/// What an operator coming from Sidekiq Web, Horizon or bull-board looks for: the overview
/// refreshes itself and shows waits and lag, its chart's label is whole at 1,000s a minute,
/// a schedule pauses from the dashboard (and a disabled one shows no next fire), the "At" field
/// says UTC and takes text, the Deliveries page lists by status before any search, and a failed
/// delivery's own page retries and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_a_schedule_browses_by_status_and_retries_from_a_delivery_page() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    smtp.script(&[
        ("gone@example.com", &["550 5.7.1 No such user here"]),
        ("lost@example.com", &["550 5.7.1 No such user here"]),
    ]);
    let app = spawn_with(Env::new(&smtp)).await;
    for email in ["gone@example.com", "lost@example.com", "ok@example.com"] {
        app.add_late_user(email).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 2, Duration::from_secs(60))
        .await;
    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;
    let id = |email: &'static str| {
        let pool = app.store.pg().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM deliveries WHERE recipient = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (gone, lost) = (id("gone@example.com").await, id("lost@example.com").await);
    // A busy minute: 1,942 more sent in it, so the chart's top label is four digits wide.
    sqlx::query(
        "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, sent_at, updated_at)
         SELECT 'overdue_summary', 'bulk', 'bulk:' || g, 'bulk@example.com', '{}', now(), now(), 'sent', now(), now()
         FROM generate_series(1, 1942) g",
    )
    .execute(app.store.pg())
    .await
    .unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    let base = &app.address;
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    fill(&c, "#token", TOKEN).await;
    click(&c, "#login").await;

    // The overview: waits and lag, the whole chart label, auto-refresh on a click.
    assert!(text(&c, "#lag").await.ends_with(" s"), "a lag in seconds");
    text(&c, "#oldest-due").await;
    let label_x = c
        .execute(
            "const t = [...document.querySelectorAll('svg.chart text')].find(e => e.textContent.endsWith('/min')); \
             return [t.textContent, t.getBBox().x];",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        label_x[0].as_str().unwrap().starts_with("19"),
        "{label_x:?}"
    );
    assert!(
        label_x[1].as_f64().unwrap() >= 0.0,
        "the label is clipped: {label_x:?}"
    );
    assert!(text(&c, "#schedules").await.contains("Missed"));
    let overview = text(&c, "#overview-overdue_summary").await;
    assert!(overview.contains("none: disabled"), "{overview}");
    assert!(
        overview.contains("1 planned") || overview.contains("3 planned"),
        "the trigger shows: {overview}"
    );
    click(&c, "#refresh-5").await;
    c.wait()
        .for_element(Locator::Css("#refresh b"))
        .await
        .unwrap();
    assert!(
        c.source()
            .await
            .unwrap()
            .contains(r#"<meta http-equiv="refresh" content="5">"#)
    );
    shot(&c, "overview-refresh").await;

    // Schedules: a disabled schedule has no next fire; pause and resume; the At field.
    c.goto(&format!("{base}/ui/schedules")).await.unwrap();
    assert!(
        text(&c, "#next-overdue_summary").await.contains("disabled"),
        "a disabled schedule shows no next fire"
    );
    assert!(
        text(&c, "#last-trigger-overdue_summary")
            .await
            .contains("3 planned")
    );
    let at = c.find(Locator::Css("#at-overdue_summary")).await.unwrap();
    assert_eq!(at.attr("type").await.unwrap().as_deref(), Some("text"));
    assert!(
        text(&c, "#schedule-overdue_summary")
            .await
            .contains("At, in UTC")
    );
    click(&c, "#pause-overdue_summary").await;
    assert!(
        text(&c, "#paused-overdue_summary")
            .await
            .contains("paused since")
    );
    assert!(
        app.store
            .schedule_pause("overdue_summary")
            .await
            .unwrap()
            .is_some()
    );
    shot(&c, "schedule-paused").await;
    click(&c, "#resume-overdue_summary").await;
    c.wait()
        .for_element(Locator::Css("#pause-overdue_summary"))
        .await
        .unwrap();
    assert!(
        app.store
            .schedule_pause("overdue_summary")
            .await
            .unwrap()
            .is_none()
    );

    // Deliveries before any search: the recent list (the busy minute's); then the failed one.
    c.goto(&format!("{base}/ui/deliveries")).await.unwrap();
    assert!(text(&c, "#results").await.contains("bulk@example.com"));
    click(&c, "#list-failed").await;
    c.wait()
        .for_element(Locator::Css("#list-recent"))
        .await
        .unwrap();
    let failed = text(&c, "#results").await;
    assert!(
        failed.contains("gone@example.com") && !failed.contains("ok@example.com"),
        "{failed}"
    );
    shot(&c, "deliveries-failed").await;

    // A failed delivery's page retries it (the server accepts this time) ...
    c.goto(&format!("{base}/ui/deliveries/{gone}"))
        .await
        .unwrap();
    click(&c, "#retry").await;
    assert!(text(&c, "#done").await.contains("Queued again"));
    smtp.wait_for(2, Duration::from_secs(30)).await;
    // ... and deletes another, once confirmed.
    c.goto(&format!("{base}/ui/deliveries/{lost}"))
        .await
        .unwrap();
    click(&c, "#confirm-delete").await;
    click(&c, "#delete").await;
    assert!(
        text(&c, "#done")
            .await
            .contains(&format!("Deleted delivery {lost}"))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = $1")
        .bind(lost)
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(left, 0);

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}
