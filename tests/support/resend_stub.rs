//! A local stand-in for Resend's email API, for tests and benchmarks: `POST /emails`,
//! `POST /emails/batch` (permissive validation) and `GET /domains`, as described in
//! `../shared/notes/resend-api.md`. Replies are scripted per recipient, every request is recorded
//! with its headers, body and arrival time, and idempotency keys replay the first success.

#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

/// One scripted answer for a recipient.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Accept,
    /// An error answer with Resend's body, e.g. `Status(422, "validation_error")`.
    Status(u16, &'static str),
    /// 429 `rate_limit_exceeded` with `retry-after: n`.
    RateLimited(u64),
    /// 429 `daily_quota_exceeded`.
    DailyQuota,
}

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub at: Instant,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The recipients this request carried, in order.
    pub fn recipients(&self) -> Vec<String> {
        let one = |e: &Value| e["to"][0].as_str().unwrap_or("").to_owned();
        match &self.body {
            Value::Array(items) => items.iter().map(one).collect(),
            e => vec![one(e)],
        }
    }
}

#[derive(Default)]
struct Inner {
    /// `None` accepts any key.
    api_key: Option<String>,
    script: HashMap<String, VecDeque<Reply>>,
    requests: Vec<Recorded>,
    /// Idempotency key → the first successful answer.
    answers: HashMap<String, Value>,
    /// Every email "sent", in order.
    delivered: Vec<Value>,
}

/// The running stand-in; stops when dropped.
pub struct ResendStub {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResendStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResendStub {
    pub async fn start() -> ResendStub {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/emails", post(one))
            .route("/emails/batch", post(batch))
            .route("/domains", get(domains))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ResendStub { url, inner, task }
    }

    /// Only this key is accepted from now on (`None`: any key).
    pub fn accept_key(&self, key: Option<&str>) {
        self.inner.lock().unwrap().api_key = key.map(str::to_owned);
    }

    /// Replies to give, in order, for mail to each recipient ("*" for anyone unscripted); once a
    /// list is used up, mail is accepted.
    pub fn script(&self, replies: &[(&str, &[Reply])]) {
        let mut inner = self.inner.lock().unwrap();
        for (rcpt, list) in replies {
            inner
                .script
                .insert(rcpt.to_lowercase(), list.iter().cloned().collect());
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn delivered(&self) -> Vec<Value> {
        self.inner.lock().unwrap().delivered.clone()
    }

    /// Waits until at least `n` emails were accepted (the bound only stops a hung test).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} emails reached the Resend stand-in",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

fn error(status: u16, name: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    let mut r = (
        code,
        Json(json!({ "statusCode": status, "name": name, "message": message })),
    )
        .into_response();
    if status == 429 {
        let h = r.headers_mut();
        h.insert("ratelimit-limit", "2".parse().unwrap());
        h.insert("ratelimit-remaining", "0".parse().unwrap());
    }
    r
}

fn reply_response(reply: &Reply) -> Response {
    match reply {
        Reply::Accept => unreachable!("accepts are answered by the caller"),
        Reply::Status(status, name) => error(*status, name, &format!("scripted {status} {name}")),
        Reply::RateLimited(secs) => {
            let mut r = error(
                429,
                "rate_limit_exceeded",
                "Too many requests. You can only make 2 requests per second.",
            );
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
            r.headers_mut()
                .insert("ratelimit-reset", secs.to_string().parse().unwrap());
            r
        }
        Reply::DailyQuota => {
            let mut r = error(
                429,
                "daily_quota_exceeded",
                "You have reached your daily email sending quota.",
            );
            r.headers_mut()
                .insert("retry-after", "3600".parse().unwrap());
            r
        }
    }
}

/// Records the request; returns an early answer for a wrong key or a replayed idempotency key.
fn admit(inner: &mut Inner, path: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let key_ok = match &inner.api_key {
        None => true,
        Some(k) => headers.get("authorization") == Some(&format!("Bearer {k}")),
    };
    let replay = headers
        .get("idempotency-key")
        .and_then(|k| inner.answers.get(k))
        .cloned();
    inner.requests.push(Recorded {
        path: path.to_owned(),
        at: Instant::now(),
        headers,
        body: body.clone(),
        status: 0,
    });
    if !key_ok {
        return Some(error(401, "invalid_api_key", "API key is invalid"));
    }
    replay.map(|answer| (StatusCode::OK, Json(answer)).into_response())
}

fn next_reply(inner: &mut Inner, rcpt: &str) -> Reply {
    let rcpt = rcpt.to_lowercase();
    for key in [rcpt.as_str(), "*"] {
        if let Some(list) = inner.script.get_mut(key)
            && let Some(r) = list.pop_front()
        {
            return r;
        }
    }
    Reply::Accept
}

fn peek_reply(inner: &Inner, rcpt: &str) -> Reply {
    let rcpt = rcpt.to_lowercase();
    for key in [rcpt.as_str(), "*"] {
        if let Some(r) = inner.script.get(key).and_then(|l| l.front()) {
            return r.clone();
        }
    }
    Reply::Accept
}

fn finish(inner: &mut Inner, r: Response) -> Response {
    if let Some(last) = inner.requests.last_mut() {
        last.status = r.status().as_u16();
    }
    r
}

async fn one(State(state): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut inner = state.lock().unwrap();
    if let Some(r) = admit(&mut inner, "/emails", &headers, &body) {
        return finish(&mut inner, r);
    }
    let rcpt = body["to"][0].as_str().unwrap_or("").to_owned();
    let r = match next_reply(&mut inner, &rcpt) {
        Reply::Accept => {
            let answer = json!({ "id": uuid::Uuid::new_v4().to_string() });
            if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
                inner.answers.insert(k.to_owned(), answer.clone());
            }
            inner.delivered.push(body);
            (StatusCode::OK, Json(answer)).into_response()
        }
        other => reply_response(&other),
    };
    finish(&mut inner, r)
}

async fn batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = state.lock().unwrap();
    if let Some(r) = admit(&mut inner, "/emails/batch", &headers, &body) {
        return finish(&mut inner, r);
    }
    let items = body.as_array().cloned().unwrap_or_default();
    if items.is_empty() || items.len() > 100 {
        let r = error(422, "validation_error", "a batch holds 1 to 100 emails");
        return finish(&mut inner, r);
    }
    let rcpt = |e: &Value| e["to"][0].as_str().unwrap_or("").to_owned();
    // A scripted answer that concerns the whole request (429, 5xx, 401) fails the whole batch.
    for e in &items {
        let who = rcpt(e);
        match peek_reply(&inner, &who) {
            Reply::Accept | Reply::Status(422, _) => {}
            _ => {
                let reply = next_reply(&mut inner, &who);
                let r = reply_response(&reply);
                return finish(&mut inner, r);
            }
        }
    }
    let permissive = headers
        .get("x-batch-validation")
        .is_some_and(|v| v == "permissive");
    let mut data = Vec::new();
    let mut errors = Vec::new();
    let mut accepted = Vec::new();
    for (index, e) in items.iter().enumerate() {
        match next_reply(&mut inner, &rcpt(e)) {
            Reply::Accept => {
                data.push(json!({ "id": uuid::Uuid::new_v4().to_string() }));
                accepted.push(e.clone());
            }
            _ => errors.push(
                json!({ "index": index, "message": format!("Invalid `to` field: {}", rcpt(e)) }),
            ),
        }
    }
    if !errors.is_empty() && !permissive {
        let r = error(422, "validation_error", "Invalid `to` field");
        return finish(&mut inner, r);
    }
    let answer = json!({ "data": data, "errors": errors });
    if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        inner.answers.insert(k.to_owned(), answer.clone());
    }
    inner.delivered.extend(accepted);
    let r = (StatusCode::OK, Json(answer)).into_response();
    finish(&mut inner, r)
}

async fn domains(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let mut inner = state.lock().unwrap();
    if let Some(r) = admit(&mut inner, "/domains", &headers, &Value::Null) {
        return finish(&mut inner, r);
    }
    let r = (StatusCode::OK, Json(json!({ "data": [] }))).into_response();
    finish(&mut inner, r)
}
