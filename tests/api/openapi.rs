//! `/api/openapi.json`: an OpenAPI 3.1 document that parses and validates, behind the token, and
//! that lists every route the router answers (and the router answers every route it lists).

use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_lists_every_route() {
    skip_without_servers!();
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

/// The document says what the API accepts (Schemathesis draws its requests from it): a user id's
/// length and characters, a limit's range, the patterns of instants and ages, and, injected when
/// the app is built, the names of this daemon's schedules in the paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_constrains_each_input_as_the_api_does() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    // The schema of a parameter, its `$ref` resolved.
    let param = |path: &str, method: &str, name: &str| -> Value {
        let op = &doc["paths"][path][method];
        let p = op["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no parameters: {op}"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}: {op}"));
        resolve(&doc, &p["schema"])
    };

    // A user id: 1 to 255 characters without a control character, wherever it is given.
    let pattern = herald::input::patterns::user_id();
    assert_eq!(pattern, r"^[^\u0000-\u001F\u007F-\u009F]*$");
    for (path, method, name) in [
        ("/api/users/{id}/preferences", "get", "id"),
        ("/api/users/{id}/preferences", "put", "id"),
        ("/api/users/{id}/preferences", "delete", "id"),
        ("/api/preview/{kind}", "get", "user_id"),
    ] {
        let s = param(path, method, name);
        assert_eq!(
            (&s["type"], &s["minLength"], &s["maxLength"], &s["pattern"]),
            (
                &"string".into(),
                &1.into(),
                &255.into(),
                &pattern.clone().into()
            ),
            "{method} {path} {name}: {s}"
        );
    }
    let body = |path: &str| {
        resolve(
            &doc,
            &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"],
        )
    };
    let trigger = body("/api/schedules/{name}/trigger");
    assert_eq!(trigger["additionalProperties"], false, "{trigger}");
    assert!(
        trigger["properties"]["user_id"]
            .to_string()
            .contains("#/components/schemas/TriggerUserId"),
        "{trigger}"
    );
    // A string user id, or a whole number of 64 bits.
    let either = &doc["components"]["schemas"]["TriggerUserId"]["oneOf"];
    assert_eq!(either[0]["$ref"], "#/components/schemas/UserId", "{either}");
    assert_eq!(
        (
            &either[1]["type"],
            &either[1]["minimum"],
            &either[1]["maximum"]
        ),
        (&"integer".into(), &i64::MIN.into(), &u64::MAX.into()),
        "{either}"
    );

    // And the API counts its characters, as maxLength does: 255 two-byte characters are an id.
    let long = |n| "%C3%A9".repeat(n);
    let (status, body_) = app
        .get(&format!("/api/users/{}/preferences", long(255)))
        .await;
    assert_eq!(status, 404, "an id, of no user: {body_}");
    let (status, body_) = app
        .get(&format!("/api/users/{}/preferences", long(256)))
        .await;
    assert_eq!(status, 400, "{body_}");

    // A limit: a whole number from 1 to 10000.
    for path in ["/api/failed", "/api/suppressions"] {
        let s = param(path, "get", "limit");
        assert_eq!(
            (&s["type"], &s["minimum"], &s["maximum"]),
            (&"integer".into(), &1.into(), &10_000.into()),
            "{path}: {s}"
        );
    }
    // Instants and ages: the patterns of `herald::input`.
    let since = param("/api/failed", "get", "since");
    assert_eq!(
        since["pattern"],
        herald::input::patterns::since(),
        "{since}"
    );
    let at = param("/api/preview/{kind}", "get", "at");
    assert_eq!(
        at["pattern"],
        herald::input::patterns::plan_instant(),
        "{at}"
    );
    let kind = param("/api/failed", "get", "kind");
    let kinds: Vec<&str> = herald::kinds::Kind::all().map(|k| k.name()).collect();
    assert_eq!(kind["enum"], serde_json::json!(kinds), "{kind}");

    // The schedules in the paths: exactly this daemon's, injected when the app is built.
    let schedules: Vec<&str> = app
        .state
        .settings
        .schedules
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(!schedules.is_empty());
    for path in [
        "/api/schedules/{name}/trigger",
        "/api/schedules/{name}/pause",
        "/api/schedules/{name}/resume",
    ] {
        let s = param(path, "post", "name");
        assert_eq!(s["enum"], serde_json::json!(schedules), "{path}: {s}");
    }
    let s = param("/api/preview/{kind}", "get", "kind");
    assert_eq!(s["enum"], serde_json::json!(schedules), "{s}");
    drop(smtp);
    app.finish().await;
}

/// `schema` with its `$ref` (if it is one) replaced by the component it names.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect(r);
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema.clone(),
    }
}
