//! The dashboard's operator actions beside the pages: pausing and resuming a schedule, and
//! retrying or deleting one failed delivery from its own page. Each is a POST with the session's
//! CSRF token (checked by [`super::auth::require_session`]) that redirects back to a page.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};

use super::{Ui, UiError};
use crate::store::ui::FailedFilter;

fn schedule_name(ui: &Ui, name: &str) -> Result<String, UiError> {
    ui.app
        .settings
        .schedule(name)
        .map(|s| s.name.clone())
        .ok_or_else(|| UiError::NotFound(crate::input::no_schedule(name)))
}

/// `POST /ui/schedules/{name}/pause`: as `POST /api/schedules/{name}/pause`.
pub async fn pause(State(ui): State<Ui>, Path(name): Path<String>) -> Result<Response, UiError> {
    let name = schedule_name(&ui, &name)?;
    ui.app
        .store
        .pause_schedule(&name, Some("paused from the dashboard"))
        .await?;
    tracing::info!(schedule = %name, "schedule paused from the dashboard");
    Ok(Redirect::to(&format!("/ui/schedules#schedule-{name}")).into_response())
}

/// `POST /ui/schedules/{name}/resume`.
pub async fn resume(State(ui): State<Ui>, Path(name): Path<String>) -> Result<Response, UiError> {
    let name = schedule_name(&ui, &name)?;
    if ui.app.store.resume_schedule(&name).await? {
        tracing::info!(schedule = %name, "schedule resumed from the dashboard");
    }
    Ok(Redirect::to(&format!("/ui/schedules#schedule-{name}")).into_response())
}

fn delivery_id(id: &str) -> Result<i64, UiError> {
    id.parse().map_err(|_| {
        UiError::BadRequest(format!(
            "{id:?} is not a delivery id; ids are whole numbers"
        ))
    })
}

/// `POST /ui/deliveries/{id}/retry`: a failed delivery back through the normal path, with a
/// fresh round of attempts, due now.
pub async fn retry(State(ui): State<Ui>, Path(id): Path<String>) -> Result<Response, UiError> {
    let id = delivery_id(&id)?;
    let done = ui
        .app
        .store
        .retry_failed(Some(&[id]), ui.app.clock.now())
        .await?;
    if done.is_empty() {
        return Err(UiError::BadRequest(format!(
            "delivery {id} is not failed, so there is nothing to retry; reload its page"
        )));
    }
    ui.app.dispatcher.nudge();
    Ok(Redirect::to(&format!("/ui/deliveries/{id}?done=retried")).into_response())
}

/// `POST /ui/deliveries/{id}/delete`: deletes a failed delivery and its attempts (a purge of
/// one).
pub async fn delete(State(ui): State<Ui>, Path(id): Path<String>) -> Result<Response, UiError> {
    let id = delivery_id(&id)?;
    let n = ui
        .app
        .store
        .ui_purge_failed(&FailedFilter::default(), Some(&[id]))
        .await?;
    if n == 0 {
        return Err(UiError::BadRequest(format!(
            "delivery {id} is not failed; only a failed delivery can be deleted"
        )));
    }
    tracing::info!(
        delivery_id = id,
        "failed delivery deleted from the dashboard"
    );
    Ok(Redirect::to(&format!("/ui/deliveries?status=failed&deleted={id}")).into_response())
}
