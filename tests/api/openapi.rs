//! `/api/openapi.json`: an OpenAPI 3.1 document that parses and validates, behind the token, and
//! that lists every route the router answers (and the router answers every route it lists).

use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_lists_every_route() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let r = app
        .http
        .get(format!("{}/api/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "behind the token");
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");

    // It parses as OpenAPI 3.1, and every $ref resolves.
    let spec = oas3::from_json(doc.to_string()).expect("an OpenAPI 3.1 document");
    let problems: Vec<String> = spec
        .operations()
        .flat_map(|(path, method, op)| {
            let mut out = Vec::new();
            for (code, response) in op.responses.iter().flatten() {
                if let Err(e) = response.resolve(&spec) {
                    out.push(format!("{method} {path} {code}: {e}"));
                }
            }
            for p in &op.parameters {
                if let Err(e) = p.resolve(&spec) {
                    out.push(format!("{method} {path} parameter: {e}"));
                }
            }
            out
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");

    // Every route of the router is in it: the routes outside the dashboard, each method.
    let mut listed: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path}");
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    let want = [
        "DELETE /api/suppressions/{address}",
        "DELETE /api/users/{id}/preferences",
        "GET /api/failed",
        "GET /api/failed/{id}",
        "GET /api/openapi.json",
        "GET /api/preview/{kind}",
        "GET /api/schedules",
        "GET /api/stats",
        "GET /api/suppressions",
        "GET /api/suppressions/{address}",
        "GET /api/users/{id}/preferences",
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "GET /unsubscribe/{token}",
        "POST /api/failed/{id}/retry",
        "POST /api/schedules/{name}/pause",
        "POST /api/schedules/{name}/resume",
        "POST /api/schedules/{name}/trigger",
        "POST /api/sessions/end",
        "POST /unsubscribe/{token}",
        "POST /webhooks/resend",
        "PUT /api/users/{id}/preferences",
    ];
    assert_eq!(listed, want);

    // And the router answers each of them (not its 404 for an unknown path, nor a 405), and its
    // 404 names each of them.
    for route in &listed {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{address}", "nobody@example.com")
            .replace("{id}", "1")
            .replace("{kind}", "weekly_report")
            .replace("{name}", "weekly_report")
            .replace("{token}", "x");
        let r = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            status != 405 && !text.contains("there is nothing at"),
            "{route}: {status} {text}"
        );
    }
    let (status, body) = app.get("/api/nothing-here").await;
    assert_eq!(status, 404);
    let error = body["error"].as_str().unwrap();
    for route in &listed {
        assert!(
            error.contains(route.as_str()),
            "{route} missing from: {error}"
        );
    }
    let _: Value = doc;
    drop(smtp);
    app.finish().await;
}
