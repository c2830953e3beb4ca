//! The command line and the API agree: the same input is refused by both with the same words,
//! or gives both the same answer; and every error of the HTTP server is JSON.

use std::time::Duration;

use chrono::Utc;
use herald::input;
use serde_json::{Value, json};

use crate::helpers::*;

/// Runs `herald ARGS…`, asserts it failed, and returns its stderr.
fn herald_err(env: &Env, args: &[&str]) -> String {
    let out = herald_cmd(env).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "herald {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The ids in `herald failed list --json …`.
fn cli_failed_ids(env: &Env, args: &[&str]) -> Vec<i64> {
    let out = herald_ok(env, &[&["failed", "list", "--json"], args].concat());
    let rows: Value = serde_json::from_str(&out).unwrap();
    ids(&rows)
}

/// The ids in `GET /api/failed?…`.
async fn api_failed_ids(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, body) = app.get(&format!("/api/failed?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    ids(&body["failed"])
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// One overdue summary for each of `emails`, refused for good by the SMTP server: returns the
/// failed deliveries' ids, in the order of `emails`.
async fn failed_deliveries(app: &TestApp, smtp: &SmtpServer, emails: &[&str]) -> Vec<i64> {
    let replies: &[&str] = &["550 5.1.1 No such user here"];
    let script: Vec<_> = emails.iter().map(|e| (*e, replies)).collect();
    smtp.script(&script);
    let mut users = Vec::new();
    for e in emails {
        users.push(app.add_late_user(e).await);
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", emails.len() as i64, Duration::from_secs(60))
        .await;
    let mut ids = Vec::new();
    for user in users {
        let id: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_one(app.store.pg())
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_kind_or_limit_is_refused_by_both_with_the_same_words() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let cases: [(&str, &[&str], String); 6] = [
        (
            "kind=nope",
            &["--kind", "nope"],
            input::kind("nope").unwrap_err(),
        ),
        ("limit=0", &["--limit", "0"], input::limit("0").unwrap_err()),
        (
            "limit=-1",
            &["--limit", "-1"],
            input::limit("-1").unwrap_err(),
        ),
        (
            "limit=10001",
            &["--limit", "10001"],
            input::limit("10001").unwrap_err(),
        ),
        (
            "since=last%20week",
            &["--since", "last week"],
            input::Since::parse("last week").unwrap_err(),
        ),
        (
            "since=2026-11-01T00:00:00",
            &["--since", "2026-11-01T00:00:00"],
            input::Since::parse("2026-11-01T00:00:00").unwrap_err(),
        ),
    ];
    for (query, args, message) in cases {
        let (status, body) = app.get(&format!("/api/failed?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(&message), "{query}: {error}");
        let stderr = herald_err(&app.env, &[&["failed", "list"], args].concat());
        assert!(stderr.contains(&message), "{args:?}: {stderr}");
    }
    // The kinds are named, and the limit's bounds given, on both sides.
    assert!(
        input::kind("nope")
            .unwrap_err()
            .contains("task_reminders, overdue_summary, weekly_report, focus_streak")
    );
    assert!(input::limit("0").unwrap_err().contains("from 1 to 10000"));
    // A good value of each is taken by both.
    let none: Vec<i64> = Vec::new();
    assert_eq!(
        api_failed_ids(&app, "kind=weekly_report&limit=1").await,
        none
    );
    assert_eq!(
        cli_failed_ids(&app.env, &["--kind", "weekly_report", "--limit", "1"]),
        none
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_an_age_or_an_instant_lists_the_same_failures_on_both_sides() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let ids = failed_deliveries(&app, &smtp, &["old@example.com", "new@example.com"]).await;
    let (old, new) = (ids[0], ids[1]);
    // The first failed three days ago.
    sqlx::query("UPDATE deliveries SET updated_at = now() - interval '3 days' WHERE id = $1")
        .bind(old)
        .execute(app.store.pg())
        .await
        .unwrap();
    let two_days_ago = (Utc::now() - chrono::Duration::days(2))
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    assert!(two_days_ago.ends_with("+01:00"), "{two_days_ago}");
    let since_instant = format!("since={}", two_days_ago.replace('+', "%2B"));
    for (query, args, expected) in [
        ("", vec![], vec![new, old]),
        ("since=24h", vec!["--since", "24h"], vec![new]),
        ("since=7d", vec!["--since", "7d"], vec![new, old]),
        (
            since_instant.as_str(),
            vec!["--since", &two_days_ago],
            vec![new],
        ),
        ("limit=1", vec!["--limit", "1"], vec![new]),
        (
            "kind=overdue_summary&since=7d&limit=2",
            vec!["--kind", "overdue_summary", "--since", "7d", "--limit", "2"],
            vec![new, old],
        ),
        (
            "kind=task_reminders",
            vec!["--kind", "task_reminders"],
            vec![],
        ),
    ] {
        assert_eq!(api_failed_ids(&app, query).await, expected, "?{query}");
        assert_eq!(cli_failed_ids(&app.env, &args), expected, "{args:?}");
    }
    // A `+` left bare in the query string arrives as a space: the error says how to send it.
    let (status, body) = app.get(&format!("/api/failed?since={two_days_ago}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("%2B"), "{body}");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_an_unknown_or_unfailed_delivery_is_refused_by_both() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let failed = failed_deliveries(&app, &smtp, &["gone@example.com"]).await[0];
    let fine = app.add_late_user("fine@example.com").await;
    let (status, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": TICK, "user_id": fine, "ids": true }),
        )
        .await;
    assert_eq!(status, 202, "{report}");
    let sent = report["delivery_ids"][0].as_i64().unwrap();
    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;
    let unknown = sent + failed + 1000;
    let retry = |id: i64| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(format!("{}/api/failed/{id}/retry", app.address))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };

    // An id that names nothing: 404 over HTTP, a non-zero exit on the command line.
    let words = input::no_delivery(unknown);
    let (status, body) = retry(unknown).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], words.as_str());
    let stderr = herald_err(&app.env, &["failed", "retry", &unknown.to_string()]);
    assert!(stderr.contains(&words), "{stderr}");
    // `show` says the same.
    let (status, body) = app.get(&format!("/api/failed/{unknown}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some(words.as_str()))
    );
    let stderr = herald_err(&app.env, &["failed", "show", &unknown.to_string()]);
    assert!(stderr.contains(&words), "{stderr}");

    // A delivery that did not fail: 409, and a non-zero exit.
    let words = format!("delivery {sent} is sent, not failed");
    let (status, body) = retry(sent).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains(&words), "{body}");
    let stderr = herald_err(&app.env, &["failed", "retry", &sent.to_string()]);
    assert!(stderr.contains(&words), "{stderr}");

    // One bad id among good ones retries nothing, and says so.
    let stderr = herald_err(
        &app.env,
        &["failed", "retry", &failed.to_string(), &unknown.to_string()],
    );
    assert!(
        stderr.contains(&input::no_delivery(unknown)) && stderr.contains("nothing was retried"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("delivery {failed} is")),
        "{stderr}"
    );
    assert_eq!(app.count_status("failed").await, 1);

    // The failed one alone is retried by either.
    let out = herald_ok(&app.env, &["failed", "retry", &failed.to_string()]);
    assert!(
        out.contains(&format!("queued 1 deliveries again: {failed}")),
        "{out}"
    );
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_at_without_an_offset_is_refused_by_both_and_says_to_add_one() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let naive = "2026-11-30T09:00:00";
    let words = input::instant(naive).unwrap_err();
    assert!(words.contains("add Z for UTC"), "{words}");

    let (status, body) = app
        .trigger("overdue_summary", json!({ "at": naive, "dry_run": true }))
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("\"at\"") && error.contains(&words),
        "{error}"
    );
    let stderr = herald_err(
        &app.env,
        &["trigger", "overdue_summary", "--at", naive, "--dry-run"],
    );
    assert!(
        stderr.contains("--at") && stderr.contains(&words),
        "{stderr}"
    );

    // With its offset, both take it.
    let (status, body) = app
        .trigger(
            "overdue_summary",
            json!({ "at": "2026-11-30T09:00:00+01:00", "dry_run": true }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["at"], "2026-11-30T08:00:00Z");
    let out = herald_ok(
        &app.env,
        &[
            "trigger",
            "overdue_summary",
            "--at",
            "2026-11-30T09:00:00+01:00",
            "--dry-run",
        ],
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["at"], "2026-11-30T08:00:00Z");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_of_the_server_is_json() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let too_big = "x".repeat(herald::http::BODY_LIMIT + 1);
    let requests = [
        (app.http.get(url("/nothing-here")), 404, "/nothing-here"),
        (
            app.http.get(url("/api/nothing")).bearer_auth(TOKEN),
            404,
            "/api/stats",
        ),
        (
            app.http.post(url("/healthz")),
            405,
            "POST is not allowed on /healthz",
        ),
        (
            app.http.delete(url("/api/failed")).bearer_auth(TOKEN),
            405,
            "DELETE is not allowed on /api/failed",
        ),
        (
            app.http.get(url("/api/failed/1/retry")).bearer_auth(TOKEN),
            405,
            "GET is not allowed",
        ),
        (
            app.http
                .post(url("/api/schedules/overdue_summary/trigger"))
                .bearer_auth(TOKEN)
                .body(too_big),
            413,
            "larger than the API reads",
        ),
        (app.http.get(url("/api/stats")), 401, "HERALD_API_TOKEN"),
        (
            app.http
                .get(url("/api/failed?color=red"))
                .bearer_auth(TOKEN),
            400,
            "unknown field",
        ),
        (
            app.http.get(url("/api/failed/abc")).bearer_auth(TOKEN),
            400,
            "whole numbers",
        ),
    ];
    for (request, status, words) in requests {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url().path());
        let r = app.http.execute(request).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(r.headers()["content-type"], "application/json", "{what}");
        if status == 405 {
            assert!(r.headers().contains_key("allow"), "{what}");
        }
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{what}: {body}");
    }
    assert_eq!(app.count_status("queued").await, 0);
    // The dashboard answers its own errors, as pages for a browser.
    let r = app.http.get(url("/ui/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/html"), "{kind}");
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let status = |authorization: String| {
        let app = &app;
        async move {
            app.http
                .get(format!("{}/api/failed", app.address))
                .header("authorization", authorization)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(status(format!("{scheme} {TOKEN}")).await, 200, "{scheme}");
    }
    // The token itself is still compared exactly, and the scheme must still be Bearer.
    for refused in [
        format!("bearer {}", TOKEN.to_uppercase()),
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        TOKEN.to_owned(),
    ] {
        assert_eq!(status(refused.clone()).await, 401, "{refused}");
    }
    drop(smtp);
    app.finish().await;
}
