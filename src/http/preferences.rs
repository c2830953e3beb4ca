//! `/api/users/{id}/preferences`: which kinds of email a user gets, for the app's settings page.
//! The rows are Herald's (`email_opt_outs`, the same ones the unsubscribe link writes); the
//! user is the app's, looked up in `herald_users`.
//!
//! - `GET` answers `{"user_id": "42", "kinds": {"task_reminders": true, …}}`, every kind listed.
//! - `PUT` with `{"kinds": {"weekly_report": false}}` sets the kinds given and answers as `GET`.
//! - `DELETE` removes every opt-out: the user gets every kind again.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::{kinds::Kind, store::Preferences};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    kinds: BTreeMap<String, bool>,
}

#[utoipa::path(get, path = "/users/{id}/preferences", tag = "users", params(("id" = super::openapi::inputs::UserId, Path, description = "The app's id of the user")),
    description = "Which kinds the user gets: `{\"user_id\": \"42\", \"kinds\": {\"task_reminders\": true, …}}`.",
    responses(
        (status = 200, description = "Every kind, true when the user gets it", body = serde_json::Value),
        (status = 400, description = "An id that is not one", body = super::openapi::ErrorBody),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Preferences>, ApiError> {
    let id = known_user(&state, &id).await?;
    Ok(Json(preferences(&state, id).await?))
}

#[utoipa::path(put, path = "/users/{id}/preferences", tag = "users", params(("id" = super::openapi::inputs::UserId, Path, description = "The app's id of the user")),
    description = "Sets the kinds given (true: gets it; false: not) and answers as GET.",
    request_body(content = super::openapi::inputs::PreferencesUpdate, content_type = "application/json",
        description = "`{\"kinds\": {\"weekly_report\": false}}`"),
    responses(
        (status = 200, description = "Every kind, true when the user gets it", body = serde_json::Value),
        (status = 400, description = "A body or an id that is not valid", body = super::openapi::ErrorBody),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody),
        (status = 413, description = "The body is too large", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Preferences>, ApiError> {
    let id = known_user(&state, &id).await?;
    let example = "send JSON like {\"kinds\": {\"weekly_report\": false}} (true: the user gets that kind; false: not)";
    let body: PreferencesBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}; {example}")))?;
    if body.kinds.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "\"kinds\" is empty; {example}"
        )));
    }
    if let Some(unknown) = body.kinds.keys().find(|k| Kind::find(k).is_none()) {
        return Err(ApiError::invalid(
            "kinds",
            format!(
                "{unknown:?} is not a kind of email; the kinds are {}",
                Kind::names()
            ),
        ));
    }
    let kinds: Vec<(String, bool)> = body.kinds.into_iter().collect();
    state
        .store
        .set_preferences(&id, &kinds)
        .await
        .map_err(|e| internal(e, "cannot write the preferences"))?;
    Ok(Json(preferences(&state, id).await?))
}

#[utoipa::path(delete, path = "/users/{id}/preferences", tag = "users", params(("id" = super::openapi::inputs::UserId, Path, description = "The app's id of the user")),
    description = "Removes every opt-out: the user gets every kind again.",
    responses(
        (status = 200, description = "Every kind, true when the user gets it", body = serde_json::Value),
        (status = 400, description = "An id that is not one", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn clear(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Preferences>, ApiError> {
    // No look-up in the app: a user it deleted can still have their rows removed.
    let id = crate::input::text_id(&id).map_err(|e| ApiError::invalid("id", e))?;
    state
        .store
        .clear_preferences(&id)
        .await
        .map_err(|e| internal(e, "cannot delete the preferences"))?;
    Ok(Json(preferences(&state, id).await?))
}

/// The id, if `herald_users` has an active user with it; 404 otherwise.
async fn known_user(state: &AppState, id: &str) -> Result<String, ApiError> {
    let id = crate::input::text_id(id).map_err(|e| ApiError::invalid("id", e))?;
    let found = state
        .store
        .source
        .user(&id)
        .await
        .map_err(|e| internal(e, "cannot look the user up in herald_users"))?;
    match found {
        Some(_) => Ok(id),
        None => Err(ApiError::NotFound(format!(
            "no active user with id {id:?} in herald_users; use the app's id of the user"
        ))),
    }
}

async fn preferences(state: &AppState, user_id: String) -> Result<Preferences, ApiError> {
    let off = state
        .store
        .opt_outs(&user_id)
        .await
        .map_err(|e| internal(e, "cannot read the preferences"))?;
    let kinds = Kind::all()
        .map(|k| (k.name().to_owned(), !off.iter().any(|o| o == k.name())))
        .collect();
    Ok(Preferences { user_id, kinds })
}

fn internal(e: sqlx::Error, what: &'static str) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context(what))
}
