//! The user's language, end to end: a user whose app locale is `fr-CA` gets French through
//! SMTP (subject, words, dates), a user without one gets the default (English); a message that
//! a locale's file lacks goes out in the default language, is counted in `/metrics` and listed by
//! `herald check`; the button links into the app.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_french_user_gets_french_and_a_missing_message_comes_in_english_counted() {
    skip_without_servers!();
    // French without the reminder's first sentence.
    let repo_fr = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/messages/fr.ftl"),
    )
    .unwrap();
    let fr: String = repo_fr
        .lines()
        .filter(|l| !l.starts_with("task_reminders-intro"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(fr.len(), repo_fr.len(), "the test removes a message");
    let templates = templates_with("messages/fr.ftl", &fr);

    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__TEMPLATES__DIR", &templates.display().to_string());
    env.set("HERALD_APP_URL", "https://app.example.com/");
    let app = spawn_with(env.clone()).await;
    let tomorrow = at("2026-11-24T10:30:00Z");
    let lea = app
        .add_user(
            "lea@example.com",
            "Europe/Paris",
            &[("Payer le loyer", tomorrow, None)],
        )
        .await;
    app.add_user(
        "sam@example.com",
        "UTC",
        &[("Renew the domain", tomorrow, None)],
    )
    .await;
    sqlx::query("UPDATE herald_demo.users SET locale = 'fr-CA' WHERE id::text = $1")
        .bind(lea.to_string())
        .execute(app.store.pg())
        .await
        .unwrap();
    let fallbacks_before = fallbacks(&app.metrics_text().await);

    let (status, report) = app
        .trigger("task_reminders", json!({ "at": "2026-11-23T09:00:00Z" }))
        .await;
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["planned"], 2, "{report}");
    let mail = smtp.wait_for(2, Duration::from_secs(60)).await;
    let of = |to: &str| mail.iter().find(|m| m.to() == to).unwrap();

    let lea = of("lea@example.com");
    assert_eq!(lea.subject(), "1 tâche à rendre demain");
    let html = lea.part("text/html").unwrap();
    let text = lea.part("text/plain").unwrap();
    assert!(html.contains(r#"<html lang="fr">"#), "{html}");
    assert!(text.starts_with("Bonjour User lea@example.com,"), "{text}");
    assert!(text.contains("- Payer le loyer à 11:30"), "{text}");
    // The missing sentence, in English, with the date still in French words.
    assert!(
        text.contains("Here is what is due tomorrow, mardi 24 novembre 2026:"),
        "{text}"
    );
    assert!(
        html.contains(r#"href="https://app.example.com/tasks""#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="https://app.example.com/settings/notifications""#),
        "{html}"
    );

    let sam = of("sam@example.com");
    assert_eq!(sam.subject(), "1 task is due tomorrow");
    let html = sam.part("text/html").unwrap();
    assert!(html.contains(r#"<html lang="en">"#), "{html}");
    assert!(
        sam.part("text/plain")
            .unwrap()
            .contains("Here is what is due tomorrow, Tuesday 24 November 2026:")
    );

    // One French email lacked one message, used once in its HTML and once in its text. The
    // count is the process's: other tests of this binary send French only with the full file,
    // which lacks nothing.
    let fallbacks_after = fallbacks(&app.metrics_text().await);
    assert_eq!(fallbacks_after - fallbacks_before, 2.0);

    // `herald check` names the missing message.
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warn  messages fr: 1 message(s) of en.ftl missing")
            && stdout.contains("task_reminders-intro"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&templates).unwrap();
    app.finish().await;
}

/// `herald_translation_fallbacks_total{locale="fr"}`, 0 when absent.
fn fallbacks(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"herald_translation_fallbacks_total{locale="fr"} "#))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
