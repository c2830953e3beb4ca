//! The failed set over HTTP: list, show and retry, with the filters and messages of
//! `herald failed`.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, openapi::ErrorBody};
use crate::input::{self, FailedFilter, NotRetried, Since};

/// `?kind=&since=&limit=`, each read by [`crate::input`] as `herald failed list` reads it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FailedQuery {
    #[param(value_type = Option<super::openapi::inputs::KindName>)]
    kind: Option<String>,
    #[param(value_type = Option<super::openapi::inputs::Since>)]
    since: Option<String>,
    #[param(value_type = Option<super::openapi::inputs::Limit>)]
    limit: Option<String>,
}

impl FailedQuery {
    pub(super) fn filter(self) -> Result<FailedFilter, ApiError> {
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

#[utoipa::path(get, path = "/failed", tag = "failed", params(FailedQuery),
    description = "The failed deliveries, newest first.",
    responses(
        (status = 200, description = "`{\"failed\": [...]}`", body = serde_json::Value),
        (status = 400, description = "A filter that is not valid", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn failed_list(
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

#[utoipa::path(get, path = "/failed/{id}", tag = "failed",
    params(("id" = i64, Path, description = "The delivery's id")),
    description = "One delivery with every attempt.",
    responses(
        (status = 200, description = "`{\"delivery\": {...}, \"attempts\": [...]}`", body = serde_json::Value),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn failed_show(
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

#[utoipa::path(post, path = "/failed/{id}/retry", tag = "failed",
    params(("id" = i64, Path, description = "The delivery's id")),
    description = "Queues a failed delivery again, for a new round of attempts.",
    responses(
        (status = 202, description = "`{\"retried\": [id]}`", body = serde_json::Value),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "The delivery is not failed", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn failed_retry(
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

#[cfg(test)]
mod props {
    use axum::http::Uri;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

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
