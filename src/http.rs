//! The HTTP API (axum): health, readiness, manual triggers, previews and the failed set, behind
//! a bearer token, described by the OpenAPI document it serves at `/api/openapi.json`.
//!
//! Every route but the dashboard's is declared once, with its `#[utoipa::path]`, through
//! utoipa-axum's `routes!`: the router and the document come from that one list ([`openapi`]).

mod error;
mod failed;
pub mod guard;
pub mod openapi;
mod preferences;
mod preview;
mod schedules;
pub mod sessions;
mod suppressions;
mod unsubscribe;
mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, OriginalUri, Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::ApiError;
use openapi::ErrorBody;

use crate::{
    config::Settings,
    gate::Gate,
    health::Dependency,
    input,
    mail::Provider,
    queue::{Dispatcher, Queue},
    render::Templates,
    schedule::{PlanError, PlanOptions, PlanReport, plan},
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
    /// The email templates, as the workers render them (previews).
    pub templates: Arc<Templates>,
    /// Failed token attempts per client address ([`guard`]).
    pub failures: guard::Failures,
    /// The dashboard's session key, as this process last read it.
    pub sessions: sessions::SessionKeys,
}

impl AppState {
    /// What previews need, from this state.
    pub fn previewer(&self) -> crate::preview::Previewer {
        crate::preview::Previewer {
            settings: self.settings.clone(),
            templates: self.templates.clone(),
            links: self.links.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The largest request body the API reads: a trigger's body is a small JSON object.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The routes under `/api`, each with its place in the document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::document))
        .routes(routes!(trigger))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(stats))
        .routes(routes!(preview::preview))
        .routes(routes!(failed::failed_list))
        .routes(routes!(failed::failed_show))
        .routes(routes!(failed::failed_retry))
        .routes(routes!(suppressions::list))
        .routes(routes!(suppressions::show, suppressions::lift))
        .routes(routes!(
            preferences::show,
            preferences::update,
            preferences::clear
        ))
        .routes(routes!(sessions::end))
}

/// The open routes outside `/api` and the dashboard.
fn open_routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .merge(OpenApiRouter::new().routes(routes!(metrics)).route_layer(
            middleware::from_fn_with_state(state.clone(), guard::metrics_token),
        ))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(unsubscribe::page, unsubscribe::one_click))
                .layer(DefaultBodyLimit::max(unsubscribe::BODY_LIMIT)),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(webhooks::resend))
                .layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT)),
        )
}

/// The router and its OpenAPI document. `dashboard` is nested under `/ui`: the dashboard's
/// routes (`ui::router`), which the layer above hands in, as the dashboard builds on this module
/// (its state, its guard). It is not in the document: HTML forms.
pub fn app_and_document(
    state: AppState,
    dashboard: Router<AppState>,
) -> (Router, utoipa::openapi::OpenApi) {
    let (api, api_doc) = api_routes().split_for_parts();
    // The token is checked before anything else under /api: an unknown path or a wrong method
    // is answered only to a caller with the token.
    let api = api
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_token,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let (open, open_doc) = open_routes(&state).split_for_parts();
    let doc = openapi::document_of(open_doc, api_doc, &state.settings);
    let known = Arc::new(openapi::Known::of(&doc));
    let router = open
        .nest("/api", api)
        // Set on the routes above only: the dashboard answers its own errors, as pages.
        .method_not_allowed_fallback(method_not_allowed)
        .nest("/ui", dashboard)
        .fallback(not_found)
        .layer(Extension(known))
        .with_state(state);
    (router, doc)
}

/// The whole router, with `dashboard` under `/ui` (`ui::router`); tests drive it with `oneshot`
/// or through a real socket. Every error it answers outside the dashboard is JSON:
/// `{"error": "…"}`.
pub fn app(state: AppState, dashboard: Router<AppState>) -> Router {
    app_and_document(state, dashboard).0
}

async fn not_found(
    Extension(known): Extension<Arc<openapi::Known>>,
    OriginalUri(uri): OriginalUri,
) -> ApiError {
    ApiError::NotFound(format!(
        "there is nothing at {}; Herald answers {}, and the dashboard under /ui (GET /api/openapi.json describes the API)",
        uri.path(),
        known.routes
    ))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; the Allow header lists what is",
        uri.path()
    ))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    description = "Liveness: the process answers.",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The Prometheus scrape: counters, histograms, and gauges read now from PostgreSQL and Redis
/// (left out, with `herald_up{dependency=…} 0`, when one does not answer within 2 s).
#[utoipa::path(get, path = "/metrics", tag = "health",
    description = "The Prometheus scrape; asks for the bearer token when one is set.",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 429, description = "Too many failed tokens from this address", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
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

/// What `/readyz` says of a dependency that failed, to a caller without the token: whether, not
/// why (PostgreSQL's and Redis's errors name hosts, users and databases).
const HIDDEN: &str = "unreachable (the reason: GET /readyz with the API token, or Herald's log)";

#[utoipa::path(get, path = "/readyz", tag = "health",
    description = "Readiness: the state and the queue (keys `postgres` and `redis` on the servers, \
        `state_file` and `queue` in the embedded home, with `home` saying which), the providers and \
        Herald's own parts. Open; with the bearer token it also says why a dependency is \
        unreachable.",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value),
        (status = 503, description = "Not ready, and what is wrong", body = serde_json::Value),
    ),
    security((), ("bearer" = [])))]
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let detailed = state
        .settings
        .api_token
        .as_ref()
        .is_some_and(|t| guard::bearer_matches(&headers, t.expose()));
    let within = Duration::from_secs(2);
    let names = state.health.names();
    let down = |e: &dyn std::fmt::Display| {
        if detailed {
            format!("unreachable: {e}")
        } else {
            tracing::warn!(error = %e, "/readyz: a dependency is unreachable");
            HIDDEN.to_owned()
        }
    };
    let pg = match tokio::time::timeout(within, state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => down(&e),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    let redis = match tokio::time::timeout(within, state.queue.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => down(&e),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    // A provider paused for its configuration needs an operator: readiness says what to fix.
    let (mut providers, needs_operator) = provider_states(&state).await;
    if !detailed {
        for text in providers.values_mut() {
            if text.as_str().is_some_and(|t| t.starts_with("unknown: ")) {
                *text = format!(
                    "unknown: {} could not be read",
                    names.name(Dependency::Queue)
                )
                .into();
            }
        }
    }
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
    let mut body = json!({
        "home": names.home(),
        "providers": providers,
        "parts": parts,
    });
    body[names.key(Dependency::State)] = pg.into();
    body[names.key(Dependency::Queue)] = redis.into();
    (status, Json(body)).into_response()
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
#[utoipa::path(get, path = "/stats", tag = "status",
    description = "Deliveries by status, the queue, the workers, the providers and the schedules; \
        what cannot be read is null, and `unreachable` says why.",
    responses((status = 200, description = "The overview", body = serde_json::Value)),
    security(("bearer" = [])))]
async fn stats(State(state): State<AppState>) -> Response {
    let names = state.health.names();
    let (db, queue) = (names.key(Dependency::State), names.key(Dependency::Queue));
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
            note(db, &e);
            serde_json::Value::Null
        }
    };
    let depth = state.queue.depth().await.map_err(|e| note(queue, &e)).ok();
    let workers = state
        .queue
        .live_workers(Duration::from_secs(10))
        .await
        .map_err(|e| note(queue, &e))
        .ok();
    let (providers, _) = provider_states(&state).await;
    let mut schedules = Vec::new();
    for s in &state.settings.schedules {
        let planned_up_to = match state.store.watermark(&s.name).await {
            Ok(w) => json!(w),
            Err(e) => {
                note(db, &e);
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

/// The body of a trigger; every field may be left out (an empty body is `{}`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    /// One user's id (a string, or a whole number for its digits); anything else is 400, an
    /// unknown user 404.
    #[schema(value_type = Option<openapi::inputs::TriggerUserId>)]
    user_id: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: bool,
    /// An instant with its offset, read by [`input::instant`].
    #[schema(value_type = Option<openapi::inputs::Instant>)]
    at: Option<String>,
    /// List the new deliveries' ids (always listed for one user).
    #[serde(default)]
    ids: bool,
}

#[utoipa::path(post, path = "/schedules/{name}/trigger", tag = "schedules",
    description = "Plans a schedule by hand, for every user or one, as a test send (keyed \
        `manual:…`); with `dry_run`, computes and inserts nothing.",
    params(("name" = String, Path, description = "The schedule (a kind's name)")),
    request_body(content = Option<TriggerBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "What was planned", body = PlanReport),
        (status = 400, description = "A body or an instant that is not valid", body = ErrorBody),
        (status = 404, description = "No such schedule or user", body = ErrorBody),
        (status = 409, description = "Not now: the schedule is paused, or `at` is after now or \
            older than the retention allows (a dry run is never refused)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    ),
    security(("bearer" = [])))]
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
    let opts = trigger_options(&body, state.clock.now())?;
    let started = std::time::Instant::now();
    let report = plan(
        &state.store,
        schedule,
        &opts,
        &state.clock,
        &state.settings.retention,
    )
    .await
    .inspect(|r| {
        state
            .metrics
            .planned("manual", &r.counts(), started.elapsed())
    })
    .map_err(|e| match e {
        // `at` is in range (checked above): what is refused is this trigger now, for the
        // schedule's pause or the clock and the retention, which the document cannot say.
        PlanError::Refused(m) => ApiError::Conflict(m),
        e @ PlanError::UnknownUser(_) => ApiError::NotFound(e.to_string()),
        PlanError::Failed(e) => ApiError::Internal(e),
    })?;
    if !opts.dry_run {
        state.dispatcher.nudge();
    }
    Ok((StatusCode::ACCEPTED, Json(report)).into_response())
}

/// A trigger's body (empty, or [`TriggerBody`] as JSON) as what to plan, `now` standing for a
/// missing `at`; a 400 that names the field (or says what the body should look like).
fn trigger_options(body: &[u8], now: DateTime<Utc>) -> Result<PlanOptions, ApiError> {
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
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
        None => now,
    };
    Ok(PlanOptions {
        at: crate::schedule::check_at(at).map_err(ApiError::BadRequest)?,
        user_id,
        dry_run: body.dry_run,
        ids: body.ids,
    })
}

/// The bodies and query strings the API parses never make it panic, whatever they hold; what
/// is accepted is read as written, and what is refused is a 400 that names the field.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use chrono::Timelike;

    use super::*;

    fn refusal(r: Result<PlanOptions, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

        #[test]
        fn any_trigger_body_is_read_or_refused_with_a_400(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let now = Utc::now();
            match trigger_options(&bytes, now) {
                Ok(_) | Err(ApiError::BadRequest(_)) => {}
                Err(e) => prop_assert!(false, "a body is never anything but read or a 400: {e:?}"),
            }
        }

        #[test]
        fn an_accepted_body_is_read_as_written(
            user in prop_oneof![
                Just(None),
                any::<u64>().prop_map(|n| Some((n.to_string(), n.to_string()))),
                "[A-Za-z0-9_-]{1,40}".prop_map(|s| Some((format!("{s:?}"), s))),
            ],
            minutes_ago in 0i64..(60 * 24 * 20),
            dry_run in any::<bool>(),
            ids in any::<bool>(),
        ) {
            let now = Utc::now();
            let at = (now - chrono::Duration::minutes(minutes_ago)).with_nanosecond(0).unwrap();
            let user_field = user.as_ref().map(|(json, _)| format!("\"user_id\": {json}, ")).unwrap_or_default();
            let body = format!(
                "{{{user_field}\"at\": \"{}\", \"dry_run\": {dry_run}, \"ids\": {ids}}}",
                at.to_rfc3339()
            );
            let o = trigger_options(body.as_bytes(), now).map_err(|e| format!("{e:?}"));
            prop_assert!(o.is_ok(), "{body} was refused: {o:?}");
            let o = o.unwrap();
            prop_assert_eq!(o.user_id, user.map(|(_, id)| id));
            prop_assert_eq!(o.at, at);
            prop_assert_eq!((o.dry_run, o.ids), (dry_run, ids));
        }

        #[test]
        fn a_refused_field_is_named_in_the_400(
            case in prop_oneof![
                // (the field as JSON, the name the answer must give)
                any::<f64>().prop_filter("not whole", |f| f.fract() != 0.0).prop_map(|f| (format!("\"user_id\": {f}"), "user_id")),
                Just(("\"user_id\": true".to_owned(), "user_id")),
                Just(("\"user_id\": \"\"".to_owned(), "user_id")),
                "[a-z ]{1,20}".prop_map(|s| (format!("\"at\": {s:?}"), "at")),
                Just(("\"at\": \"2026-11-24T09:00:00\"".to_owned(), "at")),
                "[a-z]{1,8}".prop_filter("not a field", |k| !["user_id", "at", "dry_run", "ids"].contains(&k.as_str()))
                    .prop_map(|k| (format!("{k:?}: 1"), "unknown field")),
            ],
        ) {
            let (field, name) = case;
            let body = format!("{{{field}}}");
            let m = refusal(trigger_options(body.as_bytes(), Utc::now()));
            prop_assert!(m.contains(name), "{body}: {m}");
        }
    }
}
