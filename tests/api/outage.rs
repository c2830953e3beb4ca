//! A provider that is down opens a circuit: nothing is failed while it is away, and everything
//! that waited is sent once it is back. One that drops packets (no connection within
//! `mail.connect_timeout`) is down too, not an unknown outcome: its email goes to the next
//! provider.

use std::time::Duration;

use crate::{
    helpers::*,
    ports::{Blackhole, HeldPort},
    resend_stub::ResendStub,
};

fn outcomes(attempts: &[herald::store::AttemptRow]) -> Vec<(&str, &str)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_drops_packets_is_unreachable_and_resend_takes_the_email() {
    skip_without_servers!();
    let hole = Blackhole::start().await;
    let placeholder = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = Env::new(&placeholder).with_resend(&stub.url);
    drop(placeholder);
    env.set(
        "SMTP_URL",
        &format!("smtp://127.0.0.1:{}?tls=none", hole.port()),
    );
    env.set("HERALD__MAIL__PROVIDERS", r#"["smtp", "resend"]"#);
    env.set("HERALD__MAIL__TIMEOUT", "3s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "300ms");
    let app = spawn_with(env).await;
    app.add_late_user("dropped@example.com").await;
    let id = app.trigger_overdue().await[0];
    stub.wait_for(1, Duration::from_secs(60)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;

    let attempts = app.store.attempts(id).await.unwrap();
    assert_eq!(
        outcomes(&attempts),
        [("smtp", "transient"), ("resend", "sent")]
    );
    let error = attempts[0].error.as_deref().unwrap();
    assert!(error.contains("mail.connect_timeout"), "{error}");
    assert_eq!(stub.delivered().len(), 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_that_drops_packets_is_unreachable_and_smtp_takes_the_email() {
    skip_without_servers!();
    let hole = Blackhole::start().await;
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp).with_resend(&format!("http://127.0.0.1:{}", hole.port()));
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend", "smtp"]"#);
    env.set("HERALD__MAIL__RESEND__TIMEOUT", "3s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "300ms");
    let app = spawn_with(env).await;
    app.add_late_user("dropped@example.com").await;
    let id = app.trigger_overdue().await[0];
    smtp.wait_for(1, Duration::from_secs(60)).await;
    app.wait_for_status("sent", 1, Duration::from_secs(10))
        .await;

    let attempts = app.store.attempts(id).await.unwrap();
    assert_eq!(
        outcomes(&attempts),
        [("resend", "transient"), ("smtp", "sent")]
    );
    let error = attempts[0].error.as_deref().unwrap();
    assert!(error.contains("mail.connect_timeout"), "{error}");
    let (_, ready) = app.get("/readyz").await;
    assert!(
        ready["providers"]["resend"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{ready}"
    );
    assert_eq!(smtp.count(), 1);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_refusing_connections_for_30_s_loses_and_fails_nothing() {
    skip_without_servers!();
    // Nothing listens there, and no other test's server can take the port while it is held.
    let held = HeldPort::any();
    let port = held.port();
    let placeholder = SmtpServer::start().await;
    let mut env = Env::new(&placeholder);
    drop(placeholder);
    // Every connection is refused.
    env.set("SMTP_URL", &format!("smtp://127.0.0.1:{port}?tls=none"));
    let app = spawn_with(env).await;
    for i in 0..10 {
        app.add_late_user(&format!("o{i}@example.com")).await;
    }
    app.trigger_overdue().await;

    // Far longer than the 2 + 4 + 8 s of retries: still nothing failed.
    let down_until = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < down_until {
        assert_eq!(app.count_status("failed").await, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, ready) = app.get("/readyz").await;
    assert!(
        ready["providers"]["smtp"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{ready}"
    );

    let smtp = SmtpServer::start_on(held.release()).await;
    smtp.wait_for(10, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 10, Duration::from_secs(10))
        .await;
    assert_eq!(app.count_status("failed").await, 0);
    // Each user got exactly one email: a copy is counted, not folded away.
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    for i in 0..10 {
        let to = format!("o{i}@example.com");
        assert_eq!(per_user.get(&to), Some(&1), "{to}: {per_user:?}");
    }
    assert_eq!(per_user.len(), 10, "{per_user:?}");
    drop(smtp);
    app.finish().await;
}
