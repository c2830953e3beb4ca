//! `/unsubscribe/{token}`: the page every email links to, and the one-click POST of RFC 8058.
//!
//! - `POST` opts the token's user out of the token's kind at once (or of every kind, with
//!   `scope=all` from the page's second button) and answers a short page. It is what a mail
//!   client sends for `List-Unsubscribe-Post: List-Unsubscribe=One-Click`: no login and no CSRF
//!   token, because the signed token is the authority, and doing it twice changes nothing.
//! - `GET` only shows a page with those two buttons: link scanners and previews fetch every URL
//!   of an email, so a GET never unsubscribes.
//!
//! The answers are pages for people, in plain HTML; a token that does not verify gets a 400 page
//! that says what to do.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use super::AppState;
use crate::{
    kinds::Kind,
    unsubscribe::{ONE_CLICK, Token},
};

/// The largest body read: a one-click POST is 26 bytes, the page's form a few more.
pub const BODY_LIMIT: usize = 4 * 1024;

/// `GET /unsubscribe/{token}`: what the link is about, and the buttons that act.
#[utoipa::path(get, path = "/unsubscribe/{token}", tag = "unsubscribe", params(("token" = String, Path, description = "The signed token of an email's link")),
    description = "The unsubscribe page; a GET never unsubscribes.",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 400, description = "A token that does not verify", body = String, content_type = "text/html"),
        (status = 404, description = "Unsubscribe links are off", body = String, content_type = "text/html"),
    ))]
pub async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let t = match verify(&state, &token) {
        Ok(t) => t,
        Err(refused) => return refused.page(),
    };
    let what = about(&t.kind);
    let body = format!(
        r#"<h1>Unsubscribe</h1>
<p>Stop getting <strong>{what}</strong> by email?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button id="this-kind" type="submit">Unsubscribe from these emails</button></form>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="scope" value="all"><button id="every-kind" type="submit">Unsubscribe from every email</button></form>
<p>You can turn them back on in the app's notification settings.</p>"#
    );
    respond(StatusCode::OK, "Unsubscribe", &body)
}

/// `POST /unsubscribe/{token}`: opts out, whatever form the body takes (mail clients send
/// `List-Unsubscribe=One-Click` url-encoded or as multipart); `scope=all` opts out of every kind.
#[utoipa::path(post, path = "/unsubscribe/{token}", tag = "unsubscribe", params(("token" = String, Path, description = "The signed token of an email's link")),
    description = "One-click unsubscribe (RFC 8058), or the page's buttons.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`List-Unsubscribe=One-Click`, or `scope=all`"),
    responses(
        (status = 200, description = "Unsubscribed", body = String, content_type = "text/html"),
        (status = 400, description = "A token that does not verify", body = String, content_type = "text/html"),
        (status = 404, description = "Unsubscribe links are off", body = String, content_type = "text/html"),
        (status = 503, description = "PostgreSQL did not answer", body = String, content_type = "text/html"),
    ))]
pub async fn one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let t = match verify(&state, &token) {
        Ok(t) => t,
        Err(refused) => return refused.page(),
    };
    let body = String::from_utf8_lossy(&body);
    let all = body.split('&').any(|pair| pair.trim() == "scope=all");
    let kinds: Vec<(String, bool)> = if all {
        Kind::all().map(|k| (k.name().to_owned(), false)).collect()
    } else {
        vec![(t.kind.clone(), false)]
    };
    if let Err(e) = state.store.set_preferences(&t.user_id, &kinds).await {
        tracing::error!(user_id = %t.user_id, kind = %t.kind, error = %e, "cannot record an unsubscribe");
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<h1>Not yet</h1><p>Your request could not be recorded just now. Please try the link again in a minute.</p>",
        );
    }
    tracing::info!(user_id = %t.user_id, kind = %t.kind, all, one_click = body.contains(ONE_CLICK), "unsubscribed");
    let done = if all {
        "You will get no more emails from us.".to_owned()
    } else {
        format!("You will get no more <strong>{}</strong>.", about(&t.kind))
    };
    respond(
        StatusCode::OK,
        "Unsubscribed",
        &format!(
            "<h1>Unsubscribed</h1><p>{done}</p><p>You can turn them back on in the app's notification settings.</p>"
        ),
    )
}

/// Why a link was refused.
enum Refused {
    /// No `http.public_url`: Herald makes no links.
    NotSetUp,
    Invalid(crate::unsubscribe::TokenError),
}

impl Refused {
    /// The page that says why, and what to do.
    fn page(self) -> Response {
        match self {
            Refused::NotSetUp => respond(
                StatusCode::NOT_FOUND,
                "Not set up",
                "<h1>Not set up</h1><p>This Herald has no unsubscribe links (http.public_url is not set). Change your notification settings in the app.</p>",
            ),
            Refused::Invalid(e) => respond(
                StatusCode::BAD_REQUEST,
                "Link not valid",
                &format!(
                    "<h1>This link does not work</h1><p>{}</p>",
                    escape(&e.to_string())
                ),
            ),
        }
    }
}

/// The token's user and kind, or why not.
fn verify(state: &AppState, token: &str) -> Result<Token, Refused> {
    let links = state.links.as_ref().ok_or(Refused::NotSetUp)?;
    links.verify(token).map_err(Refused::Invalid)
}

/// "emails about the tasks due tomorrow", for a kind Herald knows; the name otherwise.
fn about(kind: &str) -> String {
    match Kind::find(kind) {
        Some(k) => format!("emails about {}", escape(k.about())),
        None => format!("{} emails", escape(kind)),
    }
}

fn respond(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1c1917">
{body}
</body></html>"#
    );
    (status, Html(page)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
