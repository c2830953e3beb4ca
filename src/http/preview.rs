//! `GET /api/preview/{kind}?user_id=…&at=…`: the emails a user would get, rendered with their
//! data, nothing planned or sent ([`crate::preview`]).

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
};
use serde::Deserialize;

use super::{ApiError, AppState, openapi::ErrorBody};
use crate::preview::{Answer, PreviewError};

/// The user and the instant of a preview.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PreviewQuery {
    /// The app's id of the user.
    #[param(value_type = super::openapi::inputs::UserId)]
    user_id: String,
    /// The instant to preview, RFC 3339 with Z or an offset (`2026-11-24T09:00:00Z`); default now.
    #[param(value_type = Option<super::openapi::inputs::Instant>)]
    at: Option<String>,
}

#[utoipa::path(get, path = "/preview/{kind}", tag = "preview",
    description = "The emails a user would get from a kind at an instant (subject, text, HTML, \
        headers and the whole message), with their real data; nothing is planned or sent. \
        `emails` is empty, and `none_because` says why, when they would get none.",
    params(("kind" = String, Path, description = "The kind (`task_reminders`, `weekly_report`, …): \
        one of this daemon's schedules"), PreviewQuery),
    responses(
        (status = 200, description = "The emails", body = Answer),
        (status = 400, description = "An unknown kind, a user id or an instant that is not valid", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn preview(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Json<Answer>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use ?user_id=42&at=2026-11-24T09:00:00Z (at may be left out: now)",
            e.body_text()
        ))
    })?;
    let at =
        q.at.as_deref()
            .map(|text| {
                crate::input::instant(text).map_err(|e| {
                    let hint = if text.contains(' ') {
                        "; in a query string, write the + of an offset as %2B"
                    } else {
                        ""
                    };
                    ApiError::invalid("at", format!("{e}{hint}"))
                })
            })
            .transpose()?;
    let answer = state
        .previewer()
        .preview(&state.store, &kind, &q.user_id, at)
        .await
        .map_err(|e| match e {
            PreviewError::Invalid(m) => ApiError::BadRequest(m),
            PreviewError::UnknownUser(m) => ApiError::NotFound(m),
            PreviewError::Failed(e) => ApiError::Internal(e),
        })?;
    Ok(Json(answer))
}
