//! `POST /api/sessions/end`: ends every dashboard session of every Herald process by replacing
//! the session key (`ui::auth`); the API token stays as it is.

use axum::{Json, extract::State};
use serde_json::{Value, json};

use super::{ApiError, AppState};

#[utoipa::path(post, path = "/sessions/end", tag = "sessions",
    description = "Ends every dashboard session (every browser must sign in again) by replacing \
        the session key in PostgreSQL; other processes follow within 2 s. The API token is not \
        changed.",
    responses((status = 200, description = "`{\"ended\": true, \"at\": …}`", body = Value)),
    security(("bearer" = [])))]
pub(super) async fn end(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let at = state.sessions.end_all(&state.store).await?;
    Ok(Json(json!({ "ended": true, "at": at })))
}
