//! A local stand-in for Resend's email API, for tests and benchmarks: `POST /emails`,
//! `POST /emails/batch` (permissive validation) and `GET /domains`. Replies are scripted per
//! recipient, every request is recorded with its headers, body and arrival time, and idempotency
//! keys behave as Resend's: the same key with the same body replays the first success, with
//! another body gets 409 `invalid_idempotent_request`, and while its first request is still being
//! processed gets 409 `concurrent_idempotent_requests`. It counts the emails Resend would have
//! sent per `X-Herald-Delivery` (a replay is not one), and can be slow ([`ResendStub::set_delay`])
//! and give faults to whole requests for a while ([`ResendStub::inject`]).

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
    /// Accepts the email (a whole batch when one of its emails is scripted so), then holds the
    /// answer this long: longer than Herald's timeout, it is an email Resend took while Herald
    /// saw a timeout. While held, the key is in flight; a dropped connection ends the hold.
    Hang(Duration),
    /// Holds the request this long without taking the email, then answers 504 (single sends).
    Silent(Duration),
    /// Takes the email (a whole batch when one of its emails is scripted so), keeps the answer
    /// for its idempotency key, then answers this error status: a gateway (502, 504) or server
    /// error (500) that came after Resend took the request. A retry under the same key gets
    /// the kept answer, as from Resend.
    TakenThen(u16),
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
        let one = |e: &Value| recipient(e);
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
    /// Idempotency key → the body and the answer of its first successful request.
    answers: HashMap<String, (Value, Value)>,
    /// Keys whose first request is being held.
    in_flight: std::collections::HashSet<String>,
    /// Every email "sent", in order.
    delivered: Vec<Value>,
    /// Every email "sent", with the idempotency key of its request.
    accepted: Vec<(Option<String>, Value)>,
    /// Emails "sent" per `X-Herald-Delivery` header: every email Resend would have sent, a
    /// replay under an idempotency key it already answered not among them.
    per_delivery: HashMap<String, u32>,
    /// Lean: requests are recorded without their bodies, and `delivered` and `accepted` stay
    /// empty (only `per_delivery` counts); for runs of many thousand emails.
    lean: bool,
    /// How long each request waits before it is looked at (a slow API).
    delay: Duration,
    /// Faults given to whole requests, whatever their recipients ([`ResendStub::inject`]).
    faults: Option<Faults>,
    /// The injected faults given so far, in order.
    injected: Vec<Reply>,
}

/// Every `every`-th request (counted from the call to [`ResendStub::inject`], replays answered
/// from an idempotency key not counted) gets the next reply of `cycle`.
struct Faults {
    every: usize,
    cycle: Vec<Reply>,
    seen: usize,
    given: usize,
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

    /// Every email "sent" with the idempotency key of the request that sent it.
    pub fn accepted(&self) -> Vec<(Option<String>, Value)> {
        self.inner.lock().unwrap().accepted.clone()
    }

    /// Lean mode: see `Inner::lean`.
    pub fn lean(&self) {
        self.inner.lock().unwrap().lean = true;
    }

    /// Every request waits this long before it is looked at.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// From now on every `every`-th request, whatever its recipients, gets the next reply of
    /// `cycle` (in turn) instead of its script: the whole request is held, taken then answered
    /// with an error, or refused. Replays of an idempotency key already answered are not counted.
    pub fn inject(&self, every: usize, cycle: &[Reply]) {
        self.inner.lock().unwrap().faults = Some(Faults {
            every: every.max(1),
            cycle: cycle.to_vec(),
            seen: 0,
            given: 0,
        });
    }

    /// No more injected faults; returns the faults given since the first call to
    /// [`ResendStub::inject`], one per request, in order.
    pub fn stop_faults(&self) -> Vec<Reply> {
        let mut inner = self.inner.lock().unwrap();
        inner.faults = None;
        inner.injected.clone()
    }

    /// Emails "sent" per `X-Herald-Delivery` value (see `Inner::per_delivery`).
    pub fn per_delivery(&self) -> HashMap<String, u32> {
        self.inner.lock().unwrap().per_delivery.clone()
    }

    /// How many times each of `keys` was "sent" (see `Inner::per_delivery`), in order.
    pub fn delivery_counts(&self, keys: &[String]) -> Vec<u32> {
        let inner = self.inner.lock().unwrap();
        keys.iter()
            .map(|k| inner.per_delivery.get(k).copied().unwrap_or(0))
            .collect()
    }

    /// Emails "sent" in all, replays not counted.
    pub fn total(&self) -> u64 {
        let inner = self.inner.lock().unwrap();
        inner.per_delivery.values().map(|&n| u64::from(n)).sum()
    }

    /// Requests received in all (replays and refusals too).
    pub fn request_count(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }

    /// The number of requests that were being held when asked.
    pub fn held(&self) -> usize {
        self.inner.lock().unwrap().in_flight.len()
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
        Reply::Accept | Reply::Hang(_) | Reply::Silent(_) | Reply::TakenThen(_) => {
            unreachable!("accepts and holds are answered by the caller")
        }
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

/// Records the request; returns an early answer for a wrong key or an idempotency key seen
/// before: its first answer for the same body, a 409 for another body or while the first request
/// is still held.
fn admit(inner: &mut Inner, path: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let key_ok = match &inner.api_key {
        None => true,
        Some(k) => headers.get("authorization") == Some(&format!("Bearer {k}")),
    };
    let key = headers.get("idempotency-key").cloned();
    let kept = if inner.lean {
        Value::Null
    } else {
        body.clone()
    };
    inner.requests.push(Recorded {
        path: path.to_owned(),
        at: Instant::now(),
        headers,
        body: kept,
        status: 0,
    });
    if !key_ok {
        return Some(error(401, "invalid_api_key", "API key is invalid"));
    }
    let key = key?;
    if inner.in_flight.contains(&key) {
        return Some(error(
            409,
            "concurrent_idempotent_requests",
            "Same idempotency key used while original request is still in progress.",
        ));
    }
    let (first, answer) = inner.answers.get(&key)?;
    if first != body {
        return Some(error(
            409,
            "invalid_idempotent_request",
            "Same idempotency key used with a different request payload.",
        ));
    }
    Some((StatusCode::OK, Json(answer.clone())).into_response())
}

/// Holds the answer of a request scripted with [`Reply::Hang`], its key in flight meanwhile.
async fn hang(state: &Shared, key: Option<String>, wait: Duration) {
    /// Ends the hold also when the client goes away and the handler is dropped.
    struct InFlight(Shared, Option<String>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            if let Some(k) = &self.1 {
                self.0.lock().unwrap().in_flight.remove(k);
            }
        }
    }
    if let Some(k) = &key {
        state.lock().unwrap().in_flight.insert(k.clone());
    }
    let _held = InFlight(state.clone(), key);
    tokio::time::sleep(wait).await;
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

/// The injected fault for this request, if it is one of the `every`-th.
fn injected(inner: &mut Inner) -> Option<Reply> {
    let f = inner.faults.as_mut()?;
    f.seen += 1;
    if f.cycle.is_empty() || f.seen % f.every != 0 {
        return None;
    }
    let reply = f.cycle[f.given % f.cycle.len()].clone();
    f.given += 1;
    inner.injected.push(reply.clone());
    Some(reply)
}

/// Records an email as "sent" under the request's idempotency key.
fn take(inner: &mut Inner, key: &Option<String>, email: &Value) {
    if let Some(d) = email["headers"]["X-Herald-Delivery"].as_str() {
        *inner.per_delivery.entry(d.to_owned()).or_default() += 1;
    }
    if !inner.lean {
        inner.accepted.push((key.clone(), email.clone()));
        inner.delivered.push(email.clone());
    }
}

/// Waits the stand-in's delay, if any.
async fn slow(state: &Shared) {
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
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
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rcpt = recipient(&body);
    slow(&state).await;
    let reply = {
        let mut inner = state.lock().unwrap();
        if let Some(r) = admit(&mut inner, "/emails", &headers, &body) {
            return finish(&mut inner, r);
        }
        injected(&mut inner).unwrap_or_else(|| next_reply(&mut inner, &rcpt))
    };
    if let Reply::Silent(wait) = reply {
        tokio::time::sleep(wait).await;
        return finish(
            &mut state.lock().unwrap(),
            error(504, "gateway_timeout", "held without taking the email"),
        );
    }
    let r = match &reply {
        Reply::Accept | Reply::Hang(_) | Reply::TakenThen(_) => {
            let answer = json!({ "id": uuid::Uuid::new_v4().to_string() });
            let mut inner = state.lock().unwrap();
            if let Some(k) = &key {
                inner
                    .answers
                    .insert(k.clone(), (body.clone(), answer.clone()));
            }
            take(&mut inner, &key, &body);
            match reply {
                Reply::TakenThen(status) => taken_then(status),
                _ => (StatusCode::OK, Json(answer)).into_response(),
            }
        }
        other => reply_response(other),
    };
    if let Reply::Hang(wait) = reply {
        hang(&state, key, wait).await;
    }
    finish(&mut state.lock().unwrap(), r)
}

async fn batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let items = body.as_array().cloned().unwrap_or_default();
    let rcpt = recipient;
    let mut hold = None;
    let mut then = None;
    slow(&state).await;
    let fault = {
        let mut inner = state.lock().unwrap();
        if let Some(r) = admit(&mut inner, "/emails/batch", &headers, &body) {
            return finish(&mut inner, r);
        }
        if items.is_empty() || items.len() > 100 {
            let r = error(422, "validation_error", "a batch holds 1 to 100 emails");
            return finish(&mut inner, r);
        }
        let fault = injected(&mut inner);
        match &fault {
            None | Some(Reply::Accept) => {}
            Some(Reply::Hang(wait)) => hold = Some(*wait),
            Some(Reply::TakenThen(status)) => then = Some(*status),
            Some(Reply::Silent(_)) => {}
            Some(other) => return finish(&mut inner, reply_response(other)),
        }
        // A scripted answer that concerns the whole request (429, 5xx, 401, a hang) is for the
        // whole batch.
        for e in items.iter().take_while(|_| fault.is_none()) {
            let who = rcpt(e);
            match peek_reply(&inner, &who) {
                Reply::Accept | Reply::Status(422, _) => {}
                Reply::Hang(wait) => {
                    next_reply(&mut inner, &who);
                    hold = Some(wait);
                    break;
                }
                Reply::TakenThen(status) => {
                    next_reply(&mut inner, &who);
                    then = Some(status);
                    break;
                }
                _ => {
                    let reply = next_reply(&mut inner, &who);
                    let r = reply_response(&reply);
                    return finish(&mut inner, r);
                }
            }
        }
        fault
    };
    if let Some(Reply::Silent(wait)) = fault {
        tokio::time::sleep(wait).await;
        return finish(
            &mut state.lock().unwrap(),
            error(504, "gateway_timeout", "held without taking the batch"),
        );
    }
    let r = {
        let mut inner = state.lock().unwrap();
        let permissive = headers
            .get("x-batch-validation")
            .is_some_and(|v| v == "permissive");
        let mut data = Vec::new();
        let mut errors = Vec::new();
        let mut accepted = Vec::new();
        for (index, e) in items.iter().enumerate() {
            // An injected fault is for the whole request: its emails are taken.
            let reply = match fault {
                Some(_) => Reply::Accept,
                None => next_reply(&mut inner, &rcpt(e)),
            };
            match reply {
                Reply::Accept | Reply::Hang(_) | Reply::TakenThen(_) => {
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
        if let Some(k) = &key {
            inner
                .answers
                .insert(k.clone(), (body.clone(), answer.clone()));
        }
        for e in &accepted {
            take(&mut inner, &key, e);
        }
        match then {
            Some(status) => taken_then(status),
            None => (StatusCode::OK, Json(answer)).into_response(),
        }
    };
    if let Some(wait) = hold {
        hang(&state, key, wait).await;
    }
    finish(&mut state.lock().unwrap(), r)
}

/// The error answer of a request that was taken ([`Reply::TakenThen`]).
fn taken_then(status: u16) -> Response {
    error(
        status,
        "gateway_error",
        "the request was taken, but its answer was lost on the way",
    )
}

async fn domains(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let mut inner = state.lock().unwrap();
    if let Some(r) = admit(&mut inner, "/domains", &headers, &Value::Null) {
        return finish(&mut inner, r);
    }
    let r = (StatusCode::OK, Json(json!({ "data": [] }))).into_response();
    finish(&mut inner, r)
}

/// An email's first recipient's address: Resend takes `to` as `addr` or `Name <addr>`.
pub fn recipient(email: &Value) -> String {
    let to = email["to"][0].as_str().unwrap_or("");
    match (to.rfind('<'), to.rfind('>')) {
        (Some(start), Some(end)) if start < end => to[start + 1..end].to_owned(),
        _ => to.to_owned(),
    }
}
