//! One error type for every API route: a clear 4xx naming the input and the fix, an opaque 500
//! with its cause logged.

use axum::{
    Json,
    extract::rejection::{BytesRejection, PathRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::BODY_LIMIT;
use crate::input::NotRetried;

/// One error type for every route: a clear 4xx for bad input, an opaque 500 with the cause logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token; send `Authorization: Bearer $HERALD_API_TOKEN`")]
    Unauthorized,
    #[error("the API is closed because no token is configured; set HERALD_API_TOKEN to open it")]
    Closed,
    #[error("{0}")]
    NotFound(String),
    /// A webhook that does not verify.
    #[error("{0}")]
    Unverified(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request is right but the resource is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// The client's address failed the token too often (see [`super::guard`]); how long is left.
    #[error("{}", super::guard::too_many(*.0))]
    TooManyFailures(std::time::Duration),
    #[error(
        "the body is larger than the API reads ({BODY_LIMIT} bytes); send a small JSON object like {{\"dry_run\": true}}"
    )]
    TooLarge,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A value the operator gave for `name` that [`crate::input`] refused.
    pub(super) fn invalid(name: &str, message: String) -> ApiError {
        ApiError::BadRequest(format!("invalid value for {name:?}: {message}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Closed => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unverified(_) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(e) => {
                tracing::error!(error = crate::telemetry::chain(e), "request failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error; see Herald's log"})),
                )
                    .into_response();
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        if let ApiError::TooManyFailures(wait) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(format!("cannot read the body: {}", e.body_text()))
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::BadRequest(format!("cannot read the path: {}", e.body_text()))
    }
}

impl From<NotRetried> for ApiError {
    fn from(e: NotRetried) -> Self {
        match e {
            NotRetried::Unknown(m) => ApiError::NotFound(m),
            NotRetried::NotFailed(m) => ApiError::Conflict(m),
        }
    }
}
