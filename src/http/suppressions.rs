//! `/api/suppressions`: the addresses Herald does not email (a hard bounce, a complaint), for
//! the operator: list them, look one up, lift one.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::store::Suppression;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many, from 1 to 10,000 (100 by default).
    #[param(value_type = Option<super::openapi::inputs::Limit>)]
    limit: Option<String>,
}

/// `GET /api/suppressions?limit=`: newest first, 100 by default, at most 10,000.
#[utoipa::path(get, path = "/suppressions", tag = "suppressions", params(ListQuery),
    description = "The suppressed addresses, newest first.",
    responses(
        (status = 200, description = "The suppressions", body = serde_json::Value),
        (status = 400, description = "A limit that is not valid", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Suppression>>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("{}; use ?limit=100", e.body_text())))?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit {text:?} is not a number from 1 to 10000"))
            })?,
    };
    Ok(Json(state.store.suppressions(limit).await?))
}

/// `GET /api/suppressions/{address}`.
#[utoipa::path(get, path = "/suppressions/{address}", tag = "suppressions",
    params(("address" = String, Path, description = "The email address")),
    description = "One suppressed address, and why.",
    responses(
        (status = 200, description = "The suppression", body = serde_json::Value),
        (status = 404, description = "The address is not suppressed", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<Suppression>, ApiError> {
    if !storable(&address) {
        return Err(not_suppressed(&address));
    }
    state
        .store
        .suppression(&address)
        .await?
        .map(Json)
        .ok_or_else(|| not_suppressed(&address))
}

/// `DELETE /api/suppressions/{address}`: the address gets email again.
#[utoipa::path(delete, path = "/suppressions/{address}", tag = "suppressions",
    params(("address" = String, Path, description = "The email address")),
    description = "Lifts a suppression: the address gets emails again.",
    responses(
        (status = 200, description = "Lifted", body = serde_json::Value),
        (status = 404, description = "The address is not suppressed", body = super::openapi::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn lift(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !storable(&address) || !state.store.lift_suppression(&address).await? {
        return Err(not_suppressed(&address));
    }
    tracing::info!(address = %address, "suppression lifted");
    Ok(Json(json!({ "lifted": address.to_lowercase() })))
}

/// Whether PostgreSQL could hold this address: one with U+0000 is no suppressed address.
fn storable(address: &str) -> bool {
    !address.contains('\0')
}

fn not_suppressed(address: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{address:?} is not suppressed; GET /api/suppressions lists the addresses that are"
    ))
}
