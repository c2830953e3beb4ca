//! One-click unsubscribe (RFC 8058), end to end: the headers and the link of every email as it
//! arrives at the SMTP server, a GET that never unsubscribes, the one-click POST, a forged token,
//! the next fire without the user, and an email already queued that is skipped at claim: in both
//! homes.

use std::time::Duration;

use herald::clock::Clock;
use serde_json::json;

use crate::{helpers::*, resend_stub::ResendStub};

const PUBLIC: &str = "https://herald.example.com";

pub fn env(home: Home, smtp: &SmtpServer) -> Env {
    let mut env = home.env(smtp);
    env.set("HERALD_PUBLIC_URL", PUBLIC);
    env.set(
        "HERALD_UNSUBSCRIBE_KEY",
        "test-unsubscribe-key-0123456789abcdef",
    );
    env.set("HERALD__UNSUBSCRIBE__MAILTO", "unsubscribe@example.com");
    env.set("HERALD__MAIL__REPLY_TO", "Support <support@example.com>");
    env
}

/// The path of a link to the public URL, to request it from the app under test.
pub fn path_of(url: &str) -> &str {
    url.strip_prefix(PUBLIC).expect("a link to http.public_url")
}

/// The `https://…` link of a `List-Unsubscribe` header.
pub fn link_of(header: &str) -> String {
    header
        .split(", ")
        .find_map(|part| part.strip_prefix('<')?.strip_suffix('>'))
        .filter(|url| url.starts_with("https://"))
        .unwrap_or_else(|| panic!("no https link in {header:?}"))
        .to_owned()
}

pub async fn post(app: &TestApp, path: &str, body: &'static str) -> (u16, String) {
    let r = app
        .http
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn kinds_of(app: &TestApp, user: i64) -> serde_json::Value {
    let (status, prefs) = app.get(&format!("/api/users/{user}/preferences")).await;
    assert_eq!(status, 200, "{prefs}");
    prefs["kinds"].clone()
}

async fn one_click_opts_out_of_the_kind_and_a_get_never_does(home: Home) {
    let smtp = SmtpServer::start().await;
    let app = spawn_with(env(home, &smtp)).await;
    let late = || [("Late", at(LATE), None)];
    let ada = app.add_user("ada@example.com", "UTC", &late()).await;
    app.add_user("bob@example.com", "UTC", &late()).await;
    let (status, report) = app.trigger("overdue_summary", json!({ "at": TICK })).await;
    assert_eq!(status, 202, "{report}");
    let mail = smtp.wait_for(2, Duration::from_secs(30)).await;
    let to_ada = mail.iter().find(|m| m.to() == "ada@example.com").unwrap();

    // Both headers, through SMTP, and the same link in both parts.
    let header = to_ada.header("List-Unsubscribe").expect("List-Unsubscribe");
    assert!(
        header.ends_with(", <mailto:unsubscribe@example.com?subject=unsubscribe>"),
        "{header}"
    );
    assert_eq!(
        to_ada.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // Sender hygiene: no auto-replies to Herald (RFC 3834), replies to the configured address.
    assert_eq!(
        to_ada.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(
        to_ada.header("Reply-To").as_deref(),
        Some("Support <support@example.com>")
    );
    let link = link_of(&header);
    assert!(
        to_ada.part("text/plain").unwrap().contains(&link),
        "the text part links to the same page"
    );
    assert!(
        to_ada
            .part("text/html")
            .unwrap()
            .contains(&format!("href=\"{link}\"")),
        "the HTML part links to the same page"
    );

    // A GET (a link scanner) shows the page and changes nothing.
    let r = app
        .http
        .get(format!("{}{}", app.address, path_of(&link)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\">"), "{page}");
    assert_eq!(kinds_of(&app, ada).await["overdue_summary"], true);

    // The one-click POST, twice: opted out of that kind only, at once.
    for _ in 0..2 {
        let (status, page) = post(&app, path_of(&link), "List-Unsubscribe=One-Click").await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Unsubscribed"), "{page}");
    }
    let kinds = kinds_of(&app, ada).await;
    assert_eq!(kinds["overdue_summary"], false, "{kinds}");
    assert_eq!(kinds["weekly_report"], true, "{kinds}");

    // A token whose MAC does not match: refused, nothing written.
    let forged = format!("{}x", path_of(&link).trim_end_matches(|c| c != '.'));
    let (status, page) = post(&app, &forged, "List-Unsubscribe=One-Click").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("This link does not work"), "{page}");

    // The next fire leaves Ada out.
    let (_, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at(TICK) + chrono::Duration::days(1) }),
        )
        .await;
    assert_eq!(report["planned"], 1, "{report}");
    assert_eq!(report["opted_out"], 1, "{report}");
    let mail = smtp.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(mail.len(), 3);
    assert_eq!(
        mail.iter().filter(|m| m.to() == "ada@example.com").count(),
        1
    );
    drop(smtp);
    app.finish().await;
}

async fn an_email_queued_before_the_user_opts_out_of_everything_is_skipped_at_claim(home: Home) {
    let smtp = SmtpServer::start().await;
    let mut env = env(home, &smtp);
    // Spread over an hour of a clock that stands still: planned, not sent yet.
    env.set("HERALD__SCHEDULES__OVERDUE_SUMMARY__SPREAD", "1h");
    let now = at(TICK);
    let app = spawn_with_clock(env, Clock::manual(now)).await;
    let ada = app
        .add_user("ada@example.com", "UTC", &[("Late", at(LATE), None)])
        .await;
    let (_, report) = app.trigger("overdue_summary", json!({ "at": now })).await;
    assert_eq!(report["planned"], 1, "{report}");

    // Ada opts out of everything from the link of an earlier email.
    let links = herald::unsubscribe::Links::from_settings(&app.env.settings()).unwrap();
    let link = links.url(&ada.to_string(), "weekly_report", now);
    let (status, page) = post(&app, path_of(&link), "List-Unsubscribe=One-Click&scope=all").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("no more emails"), "{page}");

    app.advance(now + chrono::Duration::hours(1)).await;
    app.wait_for_status("skipped", 1, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.count(), 0, "the email went out after the opt-out");
    let note: String = app
        .store
        .sql_scalar("SELECT last_error FROM deliveries", &[])
        .await;
    assert_eq!(
        note,
        format!("skipped: user {ada} opted out of overdue_summary after this email was planned")
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(
            r#"herald_plan_skipped_total{schedule="overdue_summary",trigger="claim",reason="opted_out"} 1"#
        ),
        "{metrics}"
    );
    drop(smtp);
    app.finish().await;
}

async fn through_resend_the_headers_go_in_its_headers_field(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = env(home, &smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    let app = spawn_with(env).await;
    app.add_late_user("ida@example.com").await;
    app.trigger_overdue().await;
    stub.wait_for(1, Duration::from_secs(30)).await;
    let email = &stub.delivered()[0];
    let headers = &email["headers"];
    let link = link_of(headers["List-Unsubscribe"].as_str().unwrap());
    assert!(
        link.starts_with(&format!("{PUBLIC}/unsubscribe/")),
        "{link}"
    );
    assert_eq!(
        headers["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(headers["Auto-Submitted"], "auto-generated");
    assert_eq!(email["reply_to"], "\"Support\" <support@example.com>");
    assert!(email["text"].as_str().unwrap().contains(&link), "{email}");
    drop(smtp);
    app.finish().await;
}

in_both_homes!(
    one_click_opts_out_of_the_kind_and_a_get_never_does,
    an_email_queued_before_the_user_opts_out_of_everything_is_skipped_at_claim,
    through_resend_the_headers_go_in_its_headers_field,
);
