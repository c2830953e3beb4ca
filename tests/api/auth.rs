//! `/api` is never open: no token, a wrong token, and no configured token are all refused.

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_missing_and_wrong_tokens() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let url = format!("{}/api/schedules/task_reminders/trigger", app.address);

    let r = app.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("HERALD_API_TOKEN"),
        "{body}"
    );

    let r = app
        .http
        .post(&url)
        .bearer_auth("test-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(format!("{}/api/failed", app.address))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Health endpoints need no token.
    let r = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.count_status("queued").await, 0);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_is_closed_when_no_token_is_configured() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_API_TOKEN", "");
    let app = spawn_with(env).await;
    for token in ["", TOKEN] {
        let r = app
            .http
            .post(format!(
                "{}/api/schedules/task_reminders/trigger",
                app.address
            ))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("set HERALD_API_TOKEN"),
            "{body}"
        );
    }
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let (status, body) = app.trigger("monthly_digest", json!({})).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("task_reminders, overdue_summary, weekly_report"),
        "{body}"
    );

    let r = app
        .http
        .post(format!(
            "{}/api/schedules/task_reminders/trigger",
            app.address
        ))
        .bearer_auth(TOKEN)
        .body("{\"at\": \"yesterday\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("\"at\""), "{body}");

    let (status, body) = app.get("/api/failed/abc").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("whole numbers"),
        "{body}"
    );
    let (status, _) = app.get("/api/failed/999999").await;
    assert_eq!(status, 404);
    drop(smtp);
    app.finish().await;
}
