//! `POST /webhooks/resend`: Resend's events about the emails Herald sent (`email.sent`,
//! `email.delivered`, `email.delivery_delayed`, `email.bounced`, `email.complained`, …), verified
//! as Standard Webhooks sign them ([`crate::webhooks`]), recorded once per `svix-id` beside the
//! delivery they are about (found by Resend's email id), and acted on: a permanent bounce or a
//! complaint suppresses the recipient's address.
//!
//! Answers: 200 with what was done (also for a replay, which changes nothing), 401 for a request
//! that does not verify (a missing header, a stale timestamp or a wrong signature: the message
//! says which), 400 for a verified body that is not an event, 404 when no secret is configured.

use axum::{Json, body::Bytes, extract::State, http::HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::{store::NewEvent, webhooks::Verifier};

/// The largest body read: an event is a few KiB.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Data,
}

#[derive(Debug, Default, Deserialize)]
struct Data {
    email_id: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    bounce: Option<Bounce>,
}

#[derive(Debug, Deserialize)]
struct Bounce {
    /// `Permanent` (a hard bounce) or `Transient`.
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

#[utoipa::path(post, path = "/webhooks/resend", tag = "webhooks",
    description = "Resend's events, signed as Standard Webhooks (svix-id, svix-timestamp, svix-signature).",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded (or a replay, ignored)", body = serde_json::Value),
        (status = 400, description = "A body that is not an event", body = super::openapi::ErrorBody),
        (status = 401, description = "A signature that does not verify", body = super::openapi::ErrorBody),
        (status = 404, description = "Webhooks are off (no secret)", body = super::openapi::ErrorBody),
    ))]
pub async fn resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(secret) = &state.settings.mail.webhook_secret else {
        return Err(ApiError::NotFound(
            "Herald takes no webhooks: set mail.resend.webhook_secret (RESEND_WEBHOOK_SECRET) to the signing secret of the webhook in Resend's dashboard".into(),
        ));
    };
    let verifier = Verifier::new(secret.expose())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("mail.resend.webhook_secret {e}")))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verifier
        .verify(
            header("svix-id"),
            header("svix-timestamp"),
            header("svix-signature"),
            &body,
            state.clock.now(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "a webhook was refused");
            ApiError::Unverified(e.to_string())
        })?;
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not a Resend event ({e}); expected {{\"type\": \"email.bounced\", \"data\": {{\"email_id\": …, \"to\": […]}}}}"
        ))
    })?;
    let id = header("svix-id").unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let Some(delivery_id) = state
        .store
        .record_event(&NewEvent {
            svix_id: id,
            kind: &event.kind,
            provider_id: event.data.email_id.as_deref(),
            payload: &text,
        })
        .await?
    else {
        return Ok(Json(json!({ "duplicate": true, "svix_id": id })));
    };
    state.metrics.webhook_event(&event.kind);
    let reason = match (event.kind.as_str(), &event.data.bounce) {
        ("email.bounced", Some(b)) if b.kind.as_deref() == Some("Permanent") => Some("bounced"),
        ("email.complained", _) => Some("complained"),
        _ => None,
    };
    let mut suppressed = Vec::new();
    if let Some(reason) = reason {
        let detail = event
            .data
            .bounce
            .as_ref()
            .and_then(|b| b.message.as_deref());
        for address in &event.data.to {
            if state
                .store
                .suppress(address, reason, &event.kind, detail, delivery_id)
                .await?
            {
                state.metrics.suppressed(reason);
                tracing::info!(address = %address, reason, delivery_id, "address suppressed");
            }
            suppressed.push(address.to_lowercase());
        }
    }
    Ok(Json(json!({
        "recorded": event.kind,
        "delivery_id": delivery_id,
        "suppressed": suppressed,
    })))
}
