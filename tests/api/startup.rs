//! Start-up refuses broken templates; dry runs enqueue nothing; readiness reflects dependencies.

use std::time::Duration;

use herald::startup::Application;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_template_stops_start_up_with_its_file_and_line() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let dir = templates_with(
        "overdue_summary/body.html",
        "{% extends \"layout.html\" %}\n{% block content %}\n{% for t in tasks %}\n{{ t.title }\n{% endfor %}{% endblock %}\n",
    );
    let mut env = Env::new(&smtp);
    env.set("HERALD__TEMPLATES__DIR", &dir.display().to_string());
    let err = Application::build(env.settings())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("overdue_summary/body.html:4"), "{err}");

    // The binary exits non-zero with the same message.
    let out = herald_cmd(&env).arg("run").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("overdue_summary/body.html:4"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_the_emails_and_enqueues_nothing() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let id = app
        .add_user(
            "dry@example.com",
            "Asia/Kathmandu",
            &[("Late", at("2026-11-20T10:00:00Z"), None)],
        )
        .await;
    let (status, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at("2026-11-23T01:15:00Z"), "dry_run": true }),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(report["planned"], 1, "{report}");
    // Counts, not ids, unless asked for.
    assert!(report.get("delivery_ids").is_none(), "{report}");
    assert_eq!(report["preview"][0]["recipient"], "dry@example.com");
    assert_eq!(report["preview"][0]["user_id"], id.to_string());
    assert_eq!(report["preview"][0]["payload"]["tasks"][0]["title"], "Late");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    assert_eq!(app.queue.depth().await.unwrap(), 0);
    assert_eq!(smtp.count(), 0);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_redis_is_unreachable() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    drop(smtp);
    app.finish().await;

    // A second app whose Redis URL points at a closed port cannot even start: say so clearly.
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", "redis://127.0.0.1:1/0");
    let err = format!(
        "{:#}",
        Application::build(env.settings()).await.unwrap_err()
    );
    assert!(
        err.contains("cannot connect to Redis at redis://127.0.0.1:1/0"),
        "{err}"
    );
    env.cleanup_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_check_lists_every_problem_with_its_fix() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    assert!(herald_cmd(&env).arg("migrate").status().unwrap().success());
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for line in [
        "ok    configuration",
        "ok    templates",
        "ok    postgresql",
        "ok    redis",
        "ok    mail provider smtp",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
    env.cleanup().await;

    env.set("HERALD__SCHEDULES__WEEKLY_REPORT__CRON", "0 17 * * Sun");
    env.set(
        "HERALD__SCHEDULES__TASK_REMINDERS__TIMEZONE",
        "Europe/Pariss",
    );
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("schedules.weekly_report.cron (HERALD__SCHEDULES__WEEKLY_REPORT__CRON): \"0 17 * * Sun\" has 5 fields; expected 6 (seconds first), e.g. \"0 0 17 * * Sun\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "schedules.task_reminders.timezone (HERALD__SCHEDULES__TASK_REMINDERS__TIMEZONE): \"Europe/Pariss\" is not an IANA time zone"
        ),
        "{stdout}"
    );

    // `herald trigger --dry-run` from the shell plans without writing.
    let env = Env::new(&smtp);
    let out = herald_cmd(&env)
        .args(["trigger", "weekly_report", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    let out = herald_cmd(&env)
        .args(["trigger", "monthly"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the schedules are task_reminders, overdue_summary, weekly_report")
    );
    env.cleanup().await;
}
