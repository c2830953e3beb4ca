//! DKIM end to end: Herald signs with `[mail.dkim]`, the email crosses a real SMTP connection,
//! and the message as the server received it verifies with mail-auth against the DNS record
//! Herald prints, the one-click unsubscribe headers among those signed.

use std::time::Duration;

use serde_json::json;

use crate::{dkim_verify, helpers::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_arrives_with_a_dkim_signature_that_verifies() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_PUBLIC_URL", "https://herald.example.com");
    env.set(
        "HERALD_UNSUBSCRIBE_KEY",
        "test-unsubscribe-key-0123456789abcdef",
    );
    env.set("HERALD__UNSUBSCRIBE__MAILTO", "unsubscribe@example.com");
    env.set("HERALD__MAIL__REPLY_TO", "Support <support@example.com>");
    env.set("DKIM_KEY_FILE", dkim_verify::RSA_KEY);
    env.set("DKIM_SELECTOR", "herald");
    env.set("DKIM_DOMAIN", "example.com");
    let dkim = env.settings().mail.dkim.expect("DKIM is on");
    assert_eq!(dkim.record_name(), "herald._domainkey.example.com");
    let app = spawn_with(env).await;
    app.add_user(
        "ada@example.com",
        "UTC",
        &[("Book the dentist", at("2026-11-24T10:30:00Z"), None)],
    )
    .await;

    let (status, report) = app
        .trigger(
            "task_reminders",
            json!({ "at": at("2026-11-23T09:00:00Z") }),
        )
        .await;
    assert_eq!(status, 202, "{report}");
    let mail = smtp.wait_for(1, Duration::from_secs(60)).await;
    let m = &mail[0];
    assert!(m.header("List-Unsubscribe").is_some(), "{}", m.raw);
    assert!(m.header("DKIM-Signature").is_some(), "{}", m.raw);

    let signed = dkim_verify::verify(m.raw.as_bytes(), &dkim.record_name(), &dkim.dns_record)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", m.raw));
    for header in [
        "from",
        "subject",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(
            signed.iter().any(|h| h == header),
            "{header} not in {signed:?}"
        );
    }
    // The same message with its subject changed on the way does not.
    let changed = m.raw.replacen("\r\nSubject: ", "\r\nSubject: Re: ", 1);
    assert_ne!(changed, m.raw);
    assert!(
        dkim_verify::verify(changed.as_bytes(), &dkim.record_name(), &dkim.dns_record)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_check_prints_the_record_or_names_the_key_that_does_not_load() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("DKIM_KEY_FILE", dkim_verify::RSA_KEY);
    env.set("DKIM_SELECTOR", "herald");
    env.set("DKIM_DOMAIN", "example.com");
    assert!(herald_cmd(&env).arg("migrate").status().unwrap().success());
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let record = env.settings().mail.dkim.unwrap().dns_record;
    assert!(
        stdout.contains(
            "ok    dkim: rsa-2048 key loaded, signing SMTP and .eml emails as d=example.com s=herald"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "note  dkim: publish the DNS TXT record herald._domainkey.example.com with the value \"{record}\""
        )),
        "{stdout}"
    );
    env.cleanup().await;

    env.set("DKIM_KEY_FILE", "/nonexistent/herald/dkim.pem");
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "mail.dkim.key_file (DKIM_KEY_FILE): cannot read /nonexistent/herald/dkim.pem"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("`openssl genrsa -out dkim.pem 2048`"),
        "{stdout}"
    );
}
