//! The operator's dashboard at `/ui`: server-rendered pages (minijinja, embedded), no script.
//!
//! Pages: the overview ([`pages::overview`]), the schedules with dry runs and triggers
//! ([`schedules`]), the failed set with bulk retries and purges ([`failed`]), and deliveries
//! ([`pages::delivery`]); pausing a schedule and retrying or deleting one delivery ([`ops`]). Access is the API's token through a login form ([`auth`]). Every
//! response forbids scripts and framing (`Content-Security-Policy`); an email's HTML is shown in
//! a sandboxed `iframe`.

pub mod auth;
mod chart;
pub mod failed;
mod ops;
pub mod pages;
pub mod schedules;
pub mod suppressions;

use std::sync::{Arc, LazyLock, Mutex};

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use minijinja::Environment;

use crate::{http::AppState, render::Templates};

/// What the dashboard's handlers reach: the app, and the email templates for previews.
#[derive(Clone)]
pub struct Ui {
    pub app: AppState,
    /// The email templates, loaded from `templates.dir` like the workers' (the error when they
    /// cannot be: pages then say so instead of a preview).
    pub emails: Arc<Result<Templates, String>>,
    /// When the last bulk retry of this process releases its last delivery: the next one starts
    /// after it, so two retries in a row do not double the rate.
    pub retry_horizon: Arc<Mutex<DateTime<Utc>>>,
}

/// The dashboard's routes, to nest under `/ui`.
pub fn router<S>(app: AppState) -> Router<S> {
    let emails = Templates::from_settings(&app.settings, &crate::kinds::samples())
        .map_err(|e| e.to_string());
    let ui = Ui {
        app,
        emails: Arc::new(emails),
        retry_horizon: Arc::new(Mutex::new(DateTime::<Utc>::MIN_UTC)),
    };
    let guarded = Router::new()
        .route("/", get(pages::overview))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}/dry-run", post(schedules::dry_run))
        .route("/schedules/{name}/trigger", post(schedules::trigger))
        .route("/schedules/{name}/pause", post(ops::pause))
        .route("/schedules/{name}/resume", post(ops::resume))
        .route("/deliveries/{id}/retry", post(ops::retry))
        .route("/deliveries/{id}/delete", post(ops::delete))
        .route("/failed", get(failed::list).post(failed::act))
        .route("/deliveries", get(pages::search))
        .route(
            "/suppressions",
            get(suppressions::list).post(suppressions::lift),
        )
        .route("/deliveries/{id}", get(pages::delivery))
        .route("/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            ui.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .merge(guarded)
        .fallback(not_found)
        .layer(middleware::map_response(secure_headers))
        .with_state(ui)
}

/// `/ui/` is the overview's other spelling; anything else under `/ui` is not a page.
async fn not_found(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Response {
    if uri.path() == "/ui/" {
        return Redirect::to("/ui").into_response();
    }
    UiError::NotFound(format!("the dashboard has no page {}", uri.path())).into_response()
}

/// No script, no framing of the dashboard, forms only to itself; an email's own styles and
/// inline images still show in its sandboxed frame.
async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The dashboard's own page templates, embedded in the binary.
static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("message.html", include_str!("templates/message.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("schedules.html", include_str!("templates/schedules.html")),
        ("plan.html", include_str!("templates/plan.html")),
        ("failed.html", include_str!("templates/failed.html")),
        ("search.html", include_str!("templates/search.html")),
        ("delivery.html", include_str!("templates/delivery.html")),
        (
            "suppressions.html",
            include_str!("templates/suppressions.html"),
        ),
        ("rates.html", include_str!("templates/rates.html")),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("the dashboard template {name} does not parse: {e}"));
    }
    env.add_filter("when", when);
    env
});

/// An RFC 3339 instant as `2026-11-23 07:00:05 UTC`; anything else as it is.
fn when(value: String) -> String {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or(value)
}

/// Renders one page.
pub fn page(name: &str, ctx: minijinja::Value) -> Result<Response, UiError> {
    let html = PAGES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| UiError::Internal(anyhow::anyhow!("the dashboard page {name}: {e:#}")))?;
    Ok(Html(html).into_response())
}

/// Why a dashboard request was not answered with its page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(
        "the dashboard is closed because no token is configured; set HERALD_API_TOKEN to open it"
    )]
    Closed,
    /// A GET without a session: to the login form.
    #[error("log in first")]
    LogIn,
    #[error("not logged in (no valid session cookie); log in at /ui/login")]
    NotLoggedIn,
    #[error("the form has no valid CSRF token; reload the page and try again")]
    BadCsrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The client's address failed the token too often; how long is left.
    #[error("{}", crate::http::guard::too_many(*.0))]
    TooManyFailures(std::time::Duration),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        UiError::Internal(anyhow::Error::new(e).context("PostgreSQL"))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::LogIn => return Redirect::to("/ui/login").into_response(),
            UiError::Closed => StatusCode::FORBIDDEN,
            UiError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            UiError::BadCsrf => StatusCode::FORBIDDEN,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            UiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "a dashboard request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let text = match &self {
            UiError::Internal(_) => "internal error; see Herald's log".to_owned(),
            e => e.to_string(),
        };
        let body = PAGES
            .get_template("message.html")
            .and_then(|t| {
                t.render(minijinja::context! {
                    title => status.canonical_reason().unwrap_or("Error"),
                    message => text,
                    logged_in => false,
                })
            })
            .unwrap_or(text);
        let mut response = (status, Html(body)).into_response();
        if let UiError::TooManyFailures(wait) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        }
        response
    }
}
