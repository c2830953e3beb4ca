//! The suppression list on the dashboard: the addresses Herald does not email, why, and a
//! button to lift each; above it, the bounce and complaint rates over the last 24 hours and 7
//! days beside the complaint threshold mailbox providers hold bulk senders to.

use axum::{
    Extension,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Redirect, Response},
};
use minijinja::context;

use super::{Ui, UiError, auth::Session, page};

/// Rows shown.
const SHOWN: i64 = 200;

/// Gmail's and Yahoo's limit on spam complaints for bulk senders (since February 2024).
pub const COMPLAINT_LIMIT: f64 = 0.003;

/// `GET /ui/suppressions`.
pub async fn list(
    State(ui): State<Ui>,
    Extension(session): Extension<Session>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, UiError> {
    let rows = ui.app.store.suppressions(SHOWN).await?;
    let rates = rates(&ui.app.store, ui.app.clock.now()).await?;
    let lifted = query
        .as_deref()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "lifted"))
        .map(|(_, v)| v.into_owned());
    page(
        "suppressions.html",
        context! {
            logged_in => true,
            csrf => session.csrf,
            rows,
            rates,
            lifted,
        },
    )
}

/// The bounce and complaint rates over the last 24 hours and 7 days, for `rates.html`.
pub async fn rates(
    store: &crate::store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<minijinja::Value, UiError> {
    let mut rates = Vec::new();
    for (label, window) in [
        ("24 hours", chrono::Duration::hours(24)),
        ("7 days", chrono::Duration::days(7)),
    ] {
        let r = store.suppression_rates(now - window).await?;
        let pct = |n: i64| {
            if r.sent == 0 {
                "—".to_owned()
            } else {
                format!("{:.2} %", 100.0 * n as f64 / r.sent as f64)
            }
        };
        rates.push(context! {
            label,
            sent => r.sent,
            bounced => r.bounced,
            complained => r.complained,
            bounce_rate => pct(r.bounced),
            complaint_rate => pct(r.complained),
            over => r.sent > 0 && r.complained as f64 / r.sent as f64 >= COMPLAINT_LIMIT,
        });
    }
    Ok(context! {
        windows => rates,
        limit => format!("{:.1} %", COMPLAINT_LIMIT * 100.0),
    })
}

/// `POST /ui/suppressions` with `address`: lifts it, then back to the list.
pub async fn lift(State(ui): State<Ui>, body: Bytes) -> Result<Response, UiError> {
    let address = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "address")
        .map(|(_, v)| v.into_owned())
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| UiError::BadRequest("no address to lift; use the list's buttons".into()))?;
    if !ui.app.store.lift_suppression(&address).await? {
        return Err(UiError::BadRequest(format!(
            "{address:?} is not suppressed (any more)"
        )));
    }
    tracing::info!(address = %address, "suppression lifted from the dashboard");
    let to: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("lifted", &address.to_lowercase())
        .finish();
    Ok(Redirect::to(&format!("/ui/suppressions?{to}")).into_response())
}
