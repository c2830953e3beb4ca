//! Secrets stay out of everything Herald shows; the development outbox says it sends nothing;
//! an instant to plan outside the calendar is a 400.

use std::time::Duration;

use crate::helpers::*;
use crate::resend_stub::{Reply, ResendStub};

/// Recognisable in any output it leaks into.
const SECRET: &str = "s3cr3t-VALUE-xyz";

/// Everything `herald ARGS…` printed, whatever its exit code.
fn herald_output(env: &Env, args: &[&str]) -> String {
    let out = herald_cmd(env).args(args).output().unwrap();
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn get_with(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    let r = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_debug_readyz_stats_the_failed_set_and_check() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    stub.script(&[("ida@example.com", &[Reply::Status(422, "validation_error")])]);
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    let token = format!("{SECRET}-token");
    env.set("HERALD_API_TOKEN", &token);
    env.set("RESEND_API_KEY", &format!("re_{SECRET}"));
    env.set(
        "DATABASE_URL",
        &with_password(&database_url(&env.database), "postgres", SECRET),
    );
    // Redis's default user takes any password when it has none.
    env.set("REDIS_URL", &with_password(&redis_url(), "default", SECRET));
    env.set(
        "SMTP_URL",
        &format!("smtp://herald:{SECRET}@127.0.0.1:{}?tls=none", smtp.port),
    );
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    let app = spawn_with(env.clone()).await;
    app.add_late_user("ida@example.com").await;
    app.trigger_overdue_with(&token).await;
    app.wait_for_status("failed", 1, Duration::from_secs(30))
        .await;

    let debug = format!("{:?} {:#?}", app.state, env.settings());
    assert!(!debug.contains(SECRET), "{debug}");
    for path in ["/readyz", "/api/stats", "/api/failed"] {
        let (status, body) = get_with(&app, path, &token).await;
        assert!(status < 500 || path == "/readyz", "{path}: {status} {body}");
        assert!(!body.contains(SECRET), "{path}: {body}");
    }
    let (_, failed) = get_with(&app, "/api/failed", &token).await;
    assert!(failed.contains("validation_error"), "{failed}");
    let check = herald_output(&env, &["check"]);
    assert!(check.contains("ok    postgresql"), "{check}");
    assert!(!check.contains(SECRET), "{check}");
    let list = herald_output(&env, &["failed", "list"]);
    assert!(!list.contains(SECRET), "{list}");
    app.finish().await;
}

#[tokio::test]
async fn errors_about_bad_urls_do_not_quote_their_password() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let cases = [
        // Unreachable.
        (
            "DATABASE_URL",
            format!("postgres://postgres:{SECRET}@127.0.0.1:1/herald_nowhere"),
        ),
        (
            "REDIS_URL",
            format!("redis://default:{SECRET}@127.0.0.1:1/0"),
        ),
        (
            "SMTP_URL",
            format!("smtp://herald:{SECRET}@127.0.0.1:1?tls=none"),
        ),
        // Not URLs.
        (
            "DATABASE_URL",
            format!("postgres://postgres:{SECRET}@127.0.0.1:port/db"),
        ),
        ("REDIS_URL", format!("redis://:{SECRET}@[::1/0")),
        ("SMTP_URL", format!("smtp://herald:{SECRET}/x@mail")),
        ("SMTP_URL", format!("smtp://herald:{SECRET}%FF@mail")),
    ];
    for (name, value) in cases {
        let mut env = env.clone();
        env.set(name, &value);
        let out = herald_output(&env, &["check"]);
        assert!(out.contains("FAIL"), "{name}: {out}");
        assert!(!out.contains(SECRET), "{name}: {out}");
        let out = herald_output(&env, &["migrate"]);
        assert!(!out.contains(SECRET), "{name} (migrate): {out}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_provider_says_it_writes_to_a_folder_and_production_refuses_it() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.vars.retain(|(k, _)| k != "SMTP_URL");
    let outbox = std::env::temp_dir().join(format!("herald-outbox-{}", env.database));
    env.set("HERALD__MAIL__OUTBOX_DIR", &outbox.display().to_string());

    let app = spawn_with(env.clone()).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["providers"]["file"],
        format!("writing to {}, not sending", outbox.display()),
        "{body}"
    );
    let check = herald_ok(&env, &["check"]);
    assert!(
        check.contains(&format!(
            "warn  emails are written as .eml files to {} and not sent",
            outbox.display()
        )),
        "{check}"
    );
    assert!(check.contains("set SMTP_URL or RESEND_API_KEY"), "{check}");
    app.finish().await;

    env.set("HERALD_ENV", "production");
    for args in [&["check"][..], &["run"][..]] {
        let out = herald_cmd(&env).args(args).output().unwrap();
        assert!(
            !out.status.success(),
            "herald {args:?} started in production"
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("mail.providers: has the \"file\" provider"),
            "{text}"
        );
        assert!(text.contains("set SMTP_URL or RESEND_API_KEY"), "{text}");
    }
    let _ = std::fs::remove_dir_all(outbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_the_null_provider_discards_every_email() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__MAIL__PROVIDERS", r#"["null"]"#);
    let app = spawn_with(env).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["providers"]["null"],
        herald::http::NULL_PROVIDER,
        "{body}"
    );
    assert!(
        herald::http::NULL_PROVIDER.contains("discarding every email, not sending"),
        "{}",
        herald::http::NULL_PROVIDER
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_to_plan_outside_the_calendar_is_a_400_naming_at() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    for at in ["+262142-12-31T23:59:59Z", "0001-01-01T00:00:00Z"] {
        let (status, body) = app
            .trigger(
                "overdue_summary",
                serde_json::json!({ "at": at, "dry_run": true }),
            )
            .await;
        assert_eq!(status, 400, "{at}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("`at`"),
            "{at}: {body}"
        );
    }
    app.finish().await;
}

impl TestApp {
    /// As [`TestApp::trigger_overdue`], with another API token.
    async fn trigger_overdue_with(&self, token: &str) {
        let r = self
            .http
            .post(format!(
                "{}/api/schedules/overdue_summary/trigger",
                self.address
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({ "at": at(TICK) }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}
