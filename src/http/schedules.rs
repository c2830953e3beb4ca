//! `/api/schedules`: each schedule with its state (enabled, paused, how far it has planned, its
//! next fire), and an operator's pause and resume, which every Herald process's planner obeys
//! (`schedule_pauses` in PostgreSQL).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::{config::ScheduleSettings, input};

/// `GET /api/schedules`.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    description = "Every schedule with its state: enabled, paused (since when, why), how far it \
        has planned, and its next fire.",
    responses((status = 200, description = "The schedules", body = serde_json::Value)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let pauses = state.store.schedule_pauses().await?;
    let zones = crate::schedule::user_zones(&state.store)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let now = state.clock.now();
    let mut out = Vec::new();
    for s in &state.settings.schedules {
        let pause = pauses.get(&s.name);
        let next = (s.enabled && pause.is_none())
            .then(|| crate::schedule::next_fires(s, &zones, now, 1))
            .and_then(|f| f.into_iter().next())
            .map(|(at, tz)| json!({ "at": at, "zone": tz.name() }));
        out.push(json!({
            "name": s.name,
            "when": s.when(),
            "zone": s.zone.to_string(),
            "enabled": s.enabled,
            "paused": pause.map(|p| json!({ "since": p.paused_at, "reason": p.reason })),
            "planned_up_to": state.store.watermark(&s.name).await?,
            "next_fire": next,
        }));
    }
    Ok(Json(json!({ "schedules": out })))
}

/// The body of a pause; it may be left out.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseBody {
    /// Why, shown with the pause; any text but U+0000, which PostgreSQL does not store.
    #[schema(pattern = "^[^\\u0000]*$")]
    reason: Option<String>,
}

fn schedule<'a>(state: &'a AppState, name: &str) -> Result<&'a ScheduleSettings, ApiError> {
    state
        .settings
        .schedule(name)
        .ok_or_else(|| ApiError::NotFound(input::no_schedule(name)))
}

/// `POST /api/schedules/{name}/pause`, body (optional) `{"reason": "…"}`: the planner skips the
/// schedule from its next tick until it is resumed, and a trigger is refused (a dry run is not).
/// Pausing a paused schedule keeps the first pause. 200 with the pause.
#[utoipa::path(post, path = "/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body(content = Option<PauseBody>, content_type = "application/json",
        description = "Optional: `{\"reason\": \"…\"}`"),
    description = "Pauses a schedule in every Herald process: its fires are skipped (not sent \
        late) and triggers are refused until it is resumed.",
    responses(
        (status = 200, description = "Paused", body = serde_json::Value),
        (status = 400, description = "A body that is not valid", body = super::openapi::ErrorBody),
        (status = 404, description = "No such schedule", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = schedule(&state, &name)?;
    let body: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not valid: {e}; send nothing, or JSON like {{\"reason\": \"provider migration\"}}"
            ))
        })?
    };
    if body.reason.as_deref().is_some_and(|r| r.contains('\0')) {
        return Err(ApiError::invalid(
            "reason",
            "a reason cannot hold U+0000 (NUL); send text without it".to_owned(),
        ));
    }
    let p = state
        .store
        .pause_schedule(&s.name, body.reason.as_deref())
        .await?;
    tracing::info!(schedule = %s.name, reason = p.reason.as_deref().unwrap_or(""), "schedule paused by an operator");
    Ok((
        StatusCode::OK,
        Json(json!({ "schedule": s.name, "paused": { "since": p.paused_at, "reason": p.reason } })),
    )
        .into_response())
}

/// `POST /api/schedules/{name}/resume`: the planner plans the schedule's fires from its next
/// tick on (those of the pause are not sent late). 200, also when it was not paused
/// (`"was_paused": false`).
#[utoipa::path(post, path = "/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    description = "Resumes a paused schedule from the planner's next tick.",
    responses(
        (status = 200, description = "Resumed, or was not paused", body = serde_json::Value),
        (status = 404, description = "No such schedule", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = schedule(&state, &name)?;
    let was = state.store.resume_schedule(&s.name).await?;
    if was {
        tracing::info!(schedule = %s.name, "schedule resumed by an operator");
    }
    Ok(Json(
        json!({ "schedule": s.name, "paused": null, "was_paused": was }),
    ))
}
