//! One-click unsubscribe for every kind, in each locale, through SMTP and through Resend: each
//! kind's email carries the headers, the one-click POST to its URL opts the user out of that kind
//! only, and the next fire leaves the user out.

use std::time::Duration;

use herald::kinds::Kind;
use serde_json::{Value, json};

use crate::{
    helpers::*,
    resend_stub::ResendStub,
    unsubscribe::{env, kinds_of, link_of, path_of, post},
};

/// The fire every kind is triggered at: a Monday, 10:00 in Paris.
const AT: &str = "2026-11-23T09:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_in_french_through_smtp_unsubscribes_in_one_click() {
    skip_without_servers!();
    every_kind_unsubscribes(false, French).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_in_french_through_resend_unsubscribes_in_one_click() {
    skip_without_servers!();
    every_kind_unsubscribes(true, French).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_in_english_through_smtp_unsubscribes_in_one_click() {
    skip_without_servers!();
    every_kind_unsubscribes(false, English).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_in_english_through_resend_unsubscribes_in_one_click() {
    skip_without_servers!();
    every_kind_unsubscribes(true, English).await;
}

/// Herald's two languages: the user's locale, the HTML's `lang` and the footer's link.
#[derive(Clone, Copy)]
enum Locale {
    English,
    French,
}
use Locale::*;

impl Locale {
    fn tag(self) -> &'static str {
        match self {
            English => "en",
            French => "fr",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            English => "Unsubscribe from these emails",
            French => "Se désabonner de ces e-mails",
        }
    }
}

/// One user in `locale` with something to hear from every kind at [`AT`].
async fn every_kind_unsubscribes(resend: bool, locale: Locale) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = env(Home::Servers, &smtp);
    if resend {
        env = env.with_resend(&stub.url);
        env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    }
    let app = spawn_with(env).await;
    let lea = app
        .add_user(
            "lea@example.com",
            "Europe/Paris",
            &[
                // Due tomorrow (task_reminders), in an hour (due_soon), and since last night
                // (overdue_summary, overdue_morning, weekly_report).
                ("Demain", at("2026-11-24T10:30:00Z"), None),
                ("Bientôt", at("2026-11-23T10:00:00Z"), None),
                ("En retard", at("2026-11-22T20:00:00Z"), None),
            ],
        )
        .await;
    // Focus this morning (focus_streak).
    app.store
        .insert_focus_sessions(&[(lea, at("2026-11-23T07:00:00Z"), 30)])
        .await
        .unwrap();
    sqlx::query("UPDATE herald_demo.users SET locale = $2 WHERE id::text = $1")
        .bind(lea.to_string())
        .bind(locale.tag())
        .execute(app.store.pg())
        .await
        .unwrap();

    let kinds: Vec<&str> = Kind::all().map(Kind::name).collect();
    for (n, kind) in kinds.iter().enumerate() {
        let (status, report) = app.trigger(kind, json!({ "at": AT })).await;
        assert_eq!(status, 202, "{kind}: {report}");
        assert_eq!(report["planned"], 1, "{kind}: {report}");
        let (html, header) = if resend {
            let email = stub.wait_for(n + 1, Duration::from_secs(30)).await[n].clone();
            let header = email["headers"]["List-Unsubscribe"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                email["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click",
                "{kind}"
            );
            assert!(
                email["headers"]["X-Herald-Delivery"]
                    .as_str()
                    .is_some_and(|k| k.contains(kind)),
                "{kind}: {email}"
            );
            (email["html"].as_str().unwrap().to_owned(), header)
        } else {
            let m = smtp.wait_for(n + 1, Duration::from_secs(30)).await[n].clone();
            assert!(
                m.header("X-Herald-Delivery")
                    .is_some_and(|k| k.contains(kind)),
                "{kind}"
            );
            assert_eq!(
                m.header("List-Unsubscribe-Post").as_deref(),
                Some("List-Unsubscribe=One-Click"),
                "{kind}"
            );
            (
                m.part("text/html").unwrap(),
                m.header("List-Unsubscribe").unwrap(),
            )
        };
        let lang = format!(r#"<html lang="{}">"#, locale.tag());
        assert!(html.contains(&lang), "{kind}: {html}");
        assert!(html.contains(locale.unsubscribe()), "{kind}");

        let link = link_of(&header);
        let (status, page) = post(&app, path_of(&link), "List-Unsubscribe=One-Click").await;
        assert_eq!(status, 200, "{kind}: {page}");
        // Opted out of this kind and of those before it, of none after it.
        let prefs = kinds_of(&app, lea).await;
        for (i, other) in kinds.iter().enumerate() {
            assert_eq!(prefs[other], Value::Bool(i > n), "after {kind}: {prefs}");
        }
    }

    // The next fire of every kind leaves Léa out; nothing more arrives.
    for kind in &kinds {
        let (_, report) = app
            .trigger(kind, json!({ "at": at(AT) + chrono::Duration::days(1) }))
            .await;
        assert_eq!(report["planned"], 0, "{kind}: {report}");
        if *kind == "overdue_summary" {
            // Still overdue: she had something to hear, and was left out for opting out.
            assert_eq!(report["opted_out"], 1, "{kind}: {report}");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arrived = if resend {
        stub.delivered().len()
    } else {
        smtp.messages().len()
    };
    assert_eq!(arrived, kinds.len());
    assert_eq!(smtp.messages().len(), if resend { 0 } else { kinds.len() });
    app.finish().await;
}
