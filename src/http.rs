//! The HTTP API (axum): health, readiness, manual triggers and the failed set, behind a bearer token.

mod error;
mod preferences;
mod schedules;
mod suppressions;
mod unsubscribe;
mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, OriginalUri, Path, Query, Request, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

pub use error::ApiError;

use crate::{
    config::{Secret, Settings},
    gate::Gate,
    input::{self, FailedFilter, NotRetried, Since},
    mail::Provider,
    queue::{Dispatcher, Queue},
    schedule::{PlanError, PlanOptions, plan},
    store::Store,
};

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub clock: crate::clock::Clock,
    pub planner: crate::schedule::Planner,
    pub store: Store,
    pub queue: Queue,
    pub dispatcher: Dispatcher,
    /// The providers, in order, and their shared state (for `/readyz`).
    pub providers: Arc<Vec<Provider>>,
    pub gate: Gate,
    /// What is up and down: dependencies and Herald's own background parts.
    pub health: crate::health::Health,
    /// A test-only way to make a background part panic.
    pub faults: crate::supervisor::Faults,
    /// What `GET /metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// Checks the unsubscribe links; `None` without `http.public_url`.
    pub links: Option<crate::unsubscribe::Links>,
}

/// The largest request body the API reads: a trigger's body is a small JSON object.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the server answers, for the 404 of a path it does not know.
const ROUTES: &str = "GET /healthz, GET /readyz, GET /metrics, GET /api/schedules, \
POST /api/schedules/{name}/trigger, POST /api/schedules/{name}/pause, POST /api/schedules/{name}/resume, \
GET /api/stats, GET /api/failed, GET /api/failed/{id}, POST /api/failed/{id}/retry, \
GET/PUT/DELETE /api/users/{id}/preferences, GET /api/suppressions, GET/DELETE /api/suppressions/{address}, \
GET/POST /unsubscribe/{token}, POST /webhooks/resend, and the dashboard under /ui";

/// The whole router; tests drive it with `oneshot` or through a real socket. Every error it
/// answers outside the dashboard is JSON: `{"error": "…"}`.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/schedules/{name}/trigger", post(trigger))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/stats", get(stats))
        .route("/failed", get(failed_list))
        .route("/failed/{id}", get(failed_show))
        .route("/failed/{id}/retry", post(failed_retry))
        .route("/suppressions", get(suppressions::list))
        .route(
            "/suppressions/{address}",
            get(suppressions::show).delete(suppressions::lift),
        )
        .route(
            "/users/{id}/preferences",
            get(preferences::show)
                .put(preferences::update)
                .delete(preferences::clear),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), metrics_token)),
        )
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::page)
                .post(unsubscribe::one_click)
                .layer(DefaultBodyLimit::max(unsubscribe::BODY_LIMIT)),
        )
        .route(
            "/webhooks/resend",
            post(webhooks::resend).layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT)),
        )
        .nest("/api", api)
        // Set on the routes above only: the dashboard answers its own errors, as pages.
        .method_not_allowed_fallback(method_not_allowed)
        .nest("/ui", crate::ui::router(state.clone()))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!(
        "there is nothing at {}; Herald answers {ROUTES}",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; the Allow header lists what is",
        uri.path()
    ))
}

async fn require_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.settings.api_token.as_ref().map(Secret::expose) else {
        return Err(ApiError::Closed);
    };
    if bearer_matches(&headers, expected) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Whether the request carries `Authorization: Bearer <expected>`; the scheme's name is
/// matched in any case, as HTTP asks (RFC 9110, section 11.1).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start_matches(' '));
    // Constant time, so the comparison does not leak how much of a guess was right.
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// `/metrics` asks for the API's bearer token when one is set, and is open otherwise (like
/// `/readyz`: counts and states, no addresses, no content, no secrets).
async fn metrics_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match state.settings.api_token.as_ref().map(Secret::expose) {
        Some(expected) if !bearer_matches(&headers, expected) => Err(ApiError::Unauthorized),
        _ => Ok(next.run(request).await),
    }
}

/// The Prometheus scrape: counters, histograms, and gauges read now from PostgreSQL and Redis
/// (left out, with `herald_up{dependency=…} 0`, when one does not answer within 2 s).
async fn metrics(State(state): State<AppState>) -> Response {
    let live = crate::metrics::Live::read(
        &state.store,
        &state.queue,
        &state.gate,
        &state.providers,
        &state.health,
        state.clock.now(),
    )
    .await;
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(&live),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let within = Duration::from_secs(2);
    let pg = match tokio::time::timeout(within, state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    let redis = match tokio::time::timeout(within, state.queue.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    // A provider paused for its configuration needs an operator: readiness says what to fix.
    let (providers, needs_operator) = provider_states(&state).await;
    // A background part that stopped is being restarted by the supervisor.
    let parts = state.health.parts();
    let parts_ok = parts
        .values()
        .all(|p| *p == crate::health::PartState::Running);
    let status = if pg == "ok" && redis == "ok" && !needs_operator && parts_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "postgres": pg, "redis": redis, "providers": providers, "parts": parts })),
    )
        .into_response()
}

/// What `/readyz` and the dashboard say of the `null` provider while it works.
pub const NULL_PROVIDER: &str =
    "discarding every email, not sending (the null provider: benchmarks and tests only)";

/// Each provider's shared state ("ok", paused and why, circuit open), and whether one of them
/// needs an operator.
async fn provider_states(state: &AppState) -> (serde_json::Map<String, serde_json::Value>, bool) {
    let mut providers = serde_json::Map::new();
    let mut needs_operator = false;
    for p in state.providers.iter() {
        let text = match tokio::time::timeout(Duration::from_secs(2), state.gate.state(p)).await {
            Ok(Ok(s)) => {
                needs_operator |= s.needs_operator();
                match p.outbox() {
                    // The development provider: say plainly that nothing leaves.
                    Some(dir) if s == crate::gate::State::Ok => format!(
                        "writing to {}, not sending",
                        crate::config::shown_folder(dir)
                    ),
                    None if p.discards() && s == crate::gate::State::Ok => NULL_PROVIDER.to_owned(),
                    _ => s.describe(),
                }
            }
            Ok(Err(e)) => format!("unknown: {}", crate::telemetry::chain(&e)),
            Err(_) => "unknown: Redis did not answer within 2 s".to_owned(),
        };
        providers.insert(p.name().to_owned(), text.into());
    }
    (providers, needs_operator)
}

/// The operator's overview: deliveries by status, the queue, the workers, the providers and how
/// far each schedule has planned. What cannot be read (PostgreSQL or Redis is down) is `null`,
/// and `unreachable` says why, so the rest still answers.
async fn stats(State(state): State<AppState>) -> Response {
    let mut unreachable = serde_json::Map::new();
    let mut note = |what: &str, e: &dyn std::fmt::Display| {
        unreachable
            .entry(what.to_owned())
            .or_insert_with(|| e.to_string().into());
    };
    let deliveries = match state.store.status_counts().await {
        Ok(rows) => json!(
            rows.into_iter()
                .map(|(status, n)| (status.to_string(), serde_json::Value::from(n)))
                .collect::<serde_json::Map<_, _>>()
        ),
        Err(e) => {
            note("postgres", &e);
            serde_json::Value::Null
        }
    };
    let depth = state
        .queue
        .depth()
        .await
        .map_err(|e| note("redis", &e))
        .ok();
    let workers = state
        .queue
        .live_workers(Duration::from_secs(10))
        .await
        .map_err(|e| note("redis", &e))
        .ok();
    let (providers, _) = provider_states(&state).await;
    let mut schedules = Vec::new();
    for s in &state.settings.schedules {
        let planned_up_to = match state.store.watermark(&s.name).await {
            Ok(w) => json!(w),
            Err(e) => {
                note("postgres", &e);
                serde_json::Value::Null
            }
        };
        schedules.push(json!({
            "name": s.name,
            "cron": s.cron_expr,
            "relative": s.relative.map(|w| w.describe()),
            "zone": s.zone.to_string(),
            "enabled": s.enabled,
            "paused": state.store.schedule_pause(&s.name).await.ok().flatten().map(|p| p.paused_at),
            "planned_up_to": planned_up_to,
        }));
    }
    Json(json!({
        "deliveries": deliveries,
        "queue": { "name": state.settings.queue.name, "depth": depth, "high_water": state.settings.queue.high_water, "live_workers": workers },
        "providers": providers,
        "schedules": schedules,
        "parts": state.health.parts(),
        "unreachable": unreachable,
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    /// Anything but the id of a user is answered 404, naming what was sent.
    user_id: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: bool,
    /// An instant with its offset, read by [`input::instant`].
    at: Option<String>,
    /// List the new deliveries' ids (always listed for one user).
    #[serde(default)]
    ids: bool,
}

async fn trigger(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let body = body?;
    let schedule = state
        .settings
        .schedule(&name)
        .ok_or_else(|| ApiError::NotFound(input::no_schedule(&name)))?;
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not valid: {e}; send JSON like {{\"user_id\": 42, \"dry_run\": true, \"at\": \"2026-11-24T09:00:00Z\", \"ids\": true}}"
            ))
        })?
    };
    let user_id = match body.user_id {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(crate::input::user_id(&v).map_err(|e| ApiError::invalid("user_id", e))?),
    };
    let at = match body.at {
        Some(text) => input::instant(&text).map_err(|e| ApiError::invalid("at", e))?,
        None => state.clock.now(),
    };
    let opts = PlanOptions {
        at: crate::schedule::check_at(at).map_err(ApiError::BadRequest)?,
        user_id,
        dry_run: body.dry_run,
        ids: body.ids,
    };
    let started = std::time::Instant::now();
    let report = plan(
        &state.store,
        schedule,
        &opts,
        &state.clock,
        &state.settings.retention,
    )
    .await
    .inspect(|r| state.metrics.planned("manual", r, started.elapsed()))
    .map_err(|e| match e {
        PlanError::Refused(m) => ApiError::BadRequest(m),
        e @ PlanError::UnknownUser(_) => ApiError::NotFound(e.to_string()),
        PlanError::Failed(e) => ApiError::Internal(e),
    })?;
    if !opts.dry_run {
        state.dispatcher.nudge();
    }
    Ok((StatusCode::ACCEPTED, Json(report)).into_response())
}

/// `?kind=&since=&limit=`, each read by [`crate::input`] as `herald failed list` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailedQuery {
    kind: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

impl FailedQuery {
    fn filter(self) -> Result<FailedFilter, ApiError> {
        let since = self.since.as_deref().map(|text| {
            Since::parse(text).map_err(|e| {
                // A `+` left bare in a query string arrives as a space.
                let hint = if text.contains(' ') {
                    "; in a query string, write the + of an offset as %2B"
                } else {
                    ""
                };
                ApiError::invalid("since", format!("{e}{hint}"))
            })
        });
        Ok(FailedFilter {
            kind: self
                .kind
                .as_deref()
                .map(input::kind)
                .transpose()
                .map_err(|e| ApiError::invalid("kind", e))?,
            since: since.transpose()?,
            limit: self
                .limit
                .as_deref()
                .map(input::limit)
                .transpose()
                .map_err(|e| ApiError::invalid("limit", e))?
                .unwrap_or(input::DEFAULT_LIMIT),
        })
    }
}

async fn failed_list(
    State(state): State<AppState>,
    query: Result<Query<FailedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use ?kind=task_reminders&since=24h&limit=100",
            e.body_text()
        ))
    })?;
    let filter = q.filter()?;
    let rows = filter.fetch(&state.store, state.clock.now()).await?;
    Ok(Json(json!({ "failed": rows })).into_response())
}

async fn failed_show(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let id = parse_id(&id)?;
    let delivery = state
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(input::no_delivery(id)))?;
    let attempts = state.store.attempts(id).await?;
    Ok(Json(json!({ "delivery": delivery, "attempts": attempts })).into_response())
}

async fn failed_retry(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let id = parse_id(&id)?;
    let retried = state
        .store
        .retry_failed(Some(&[id]), state.clock.now())
        .await?;
    if retried.is_empty() {
        let found = state.store.delivery(id).await?;
        return Err(NotRetried::explain(id, found.as_ref()).into());
    }
    state.dispatcher.nudge();
    Ok((StatusCode::ACCEPTED, Json(json!({ "retried": retried }))).into_response())
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{text:?} is not a delivery id; ids are whole numbers"
        ))
    })
}

/// The bodies and query strings the API parses never make it panic, whatever they hold.
#[cfg(test)]
mod props {
    use axum::http::Uri;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

        #[test]
        fn any_trigger_body_parses_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<TriggerBody>(&bytes);
        }

        #[test]
        fn any_json_trigger_body_parses_or_is_refused(
            user_id in prop_oneof![Just("null".to_owned()), any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|n| n.to_string()), "\\PC*".prop_map(|s| format!("{s:?}"))],
            at in "\\PC{0,40}",
            extra in proptest::option::of("[a-z_]{1,10}"),
        ) {
            let extra = extra.map(|k| format!(", {k:?}: 1")).unwrap_or_default();
            let body = format!("{{\"user_id\": {user_id}, \"at\": {at:?}, \"dry_run\": true{extra}}}");
            if let Ok(b) = serde_json::from_slice::<TriggerBody>(body.as_bytes())
                && let Some(at) = b.at
                && let Ok(at) = input::instant(&at)
            {
                let _ = crate::schedule::check_at(at);
            }
        }

        #[test]
        fn any_failed_list_query_parses_or_is_refused(query in "[a-z=&%0-9:+.TZ_-]{0,80}") {
            if let Ok(uri) = format!("/api/failed?{query}").parse::<Uri>()
                && let Ok(Query(q)) = Query::<FailedQuery>::try_from_uri(&uri)
                && let Ok(FailedFilter { since: Some(since), .. }) = q.filter()
            {
                let _ = since.resolve(chrono::Utc::now());
            }
        }
    }
}
