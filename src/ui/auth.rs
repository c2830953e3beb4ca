//! The dashboard's login: a session cookie signed with `HERALD_API_TOKEN` and the session key,
//! and a CSRF token derived from it that every POST must carry.
//!
//! # The session
//!
//! Logging in with the API token sets `herald_session` (HttpOnly, SameSite=Strict, Path=/ui,
//! Secure with `http.secure_cookies` or behind a proxy that sends `X-Forwarded-Proto: https`) to
//! `<expiry>.<nonce>.<mac>`: an expiry in Unix seconds, 16 random bytes, and HMAC-SHA256 of both
//! keyed with the token and the session key. The session key is one random row in PostgreSQL
//! (`ui_session_key`), so every Herald process behind a load balancer accepts the same cookie;
//! each process reads it again at most every `KEY_TTL` ([`crate::http::sessions`]). Replacing it (`herald sessions end`,
//! `POST /api/sessions/end`) logs every browser out and leaves the API token as it is; changing
//! the token logs every browser out too. Failed logins count toward the API's limit per client
//! address ([`crate::http::guard`]).
//!
//! # CSRF
//!
//! The CSRF token of a session is HMAC-SHA256(token, "csrf:" + cookie value). Pages put it in a
//! hidden field of every form, and every POST (logout included; the login form aside) is refused
//! without it. Another site can make a browser send the cookie (were it not SameSite=Strict) but
//! cannot read it (HttpOnly, the same-origin policy), so it cannot compute the token: two
//! independent locks. Both the cookie and the CSRF token are compared in constant time.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, Method, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Ui, UiError, page};
use crate::{config::Secret, http::guard};

/// The key sessions are signed with: the token and the session key.
async fn signing_key(ui: &Ui) -> Result<String, UiError> {
    let token = token(ui)?.to_owned();
    let key = ui.app.sessions.current(&ui.app.store).await?;
    Ok(format!("{token}\u{0}{key}"))
}

/// The session cookie's name.
pub const COOKIE: &str = "herald_session";

/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The largest form the dashboard reads (a page of checked rows is far below).
const MAX_FORM: usize = 1024 * 1024;

/// What a logged-in request carries to its page: the CSRF token its forms must echo.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
}

fn mac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session cookie value, valid until `now + SESSION_LIFETIME`.
pub fn new_session(key: &str, now: i64) -> String {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let expiry = now + SESSION_LIFETIME.as_secs() as i64;
    let body = format!("{expiry}.{}", hex(&nonce));
    format!("{body}.{}", hex(&mac(key, &[b"session:", body.as_bytes()])))
}

/// Whether `value` is a session cookie signed with `key` and not expired at `now`.
pub fn valid_session(key: &str, value: &str, now: i64) -> bool {
    let Some((body, given)) = value.rsplit_once('.') else {
        return false;
    };
    let expected = hex(&mac(key, &[b"session:", body.as_bytes()]));
    let signed: bool = given.as_bytes().ct_eq(expected.as_bytes()).into();
    let unexpired = body
        .split_once('.')
        .and_then(|(e, _)| e.parse::<i64>().ok())
        .is_some_and(|e| e > now);
    signed && unexpired
}

/// The CSRF token of a session.
pub fn csrf_token(key: &str, session: &str) -> String {
    hex(&mac(key, &[b"csrf:", session.as_bytes()]))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token, or the UI is closed like `/api`.
fn token(ui: &Ui) -> Result<&str, UiError> {
    ui.app
        .settings
        .api_token
        .as_ref()
        .map(Secret::expose)
        .ok_or(UiError::Closed)
}

/// The `Set-Cookie` value for `value`, living `max_age` seconds (0 deletes it): `Secure` with
/// `http.secure_cookies` (`always`), or behind a proxy that says the request came over HTTPS.
fn set_cookie(always: bool, headers: &HeaderMap, value: &str, max_age: u64) -> String {
    let secure = always
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Guards every dashboard route but the login form: a valid session cookie, and on a POST a
/// form whose `csrf` field matches it. A GET without a session goes to the login form.
pub async fn require_session(
    State(ui): State<Ui>,
    request: Request,
    next: Next,
) -> Result<Response, UiError> {
    let key = signing_key(&ui).await?;
    let now = chrono::Utc::now().timestamp();
    let session = cookie(request.headers(), COOKIE)
        .filter(|v| valid_session(&key, v, now))
        .map(str::to_owned);
    let Some(session) = session else {
        return Err(if request.method() == Method::GET {
            UiError::LogIn
        } else {
            UiError::NotLoggedIn
        });
    };
    let csrf = csrf_token(&key, &session);
    let mut request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|e| UiError::BadRequest(format!("cannot read the form: {e}")))?;
        let given = form_value(&bytes, "csrf").unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(UiError::BadCsrf);
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    request.extensions_mut().insert(Session { csrf });
    Ok(next.run(request).await)
}

/// The first value of `name` in a URL-encoded form.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /ui/login`.
pub async fn login_form(State(ui): State<Ui>) -> Result<Response, UiError> {
    token(&ui)?;
    page(
        "login.html",
        minijinja::context! { error => None::<String> },
    )
}

/// `POST /ui/login`: the token in the `token` field. Sets the session cookie and goes to the
/// overview; a wrong token is answered 401 with the form again, and an address that failed too
/// often 429.
pub async fn login(State(ui): State<Ui>, request: Request) -> Result<Response, UiError> {
    let expected = token(&ui)?;
    let ip = guard::client_ip(&request);
    ui.app
        .failures
        .check(ip)
        .map_err(UiError::TooManyFailures)?;
    let headers = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_FORM)
        .await
        .map_err(|e| UiError::BadRequest(format!("cannot read the form: {e}")))?;
    let given = form_value(&body, "token").unwrap_or_default();
    if !bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(client = %ip, "a dashboard login with a wrong token");
        ui.app.failures.fail(ip);
        let mut response = page(
            "login.html",
            minijinja::context! { error => "That is not HERALD_API_TOKEN." },
        )?;
        *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let key = signing_key(&ui).await?;
    let value = new_session(&key, chrono::Utc::now().timestamp());
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            ui.app.settings.secure_cookies,
            &headers,
            &value,
            SESSION_LIFETIME.as_secs(),
        )
        .parse()
        .expect("a cookie is a header value"),
    );
    Ok(response)
}

/// `POST /ui/logout`: deletes the cookie.
pub async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(ui.app.settings.secure_cookies, &headers, "", 0)
            .parse()
            .expect("a cookie is a header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_only_with_its_key_and_until_it_expires() {
        let s = new_session("k1", 1_000);
        assert!(valid_session("k1", &s, 1_000));
        assert!(!valid_session("k2", &s, 1_000));
        assert!(!valid_session(
            "k1",
            &s,
            1_000 + SESSION_LIFETIME.as_secs() as i64
        ));
        // A changed expiry breaks the signature.
        let (_, rest) = s.split_once('.').unwrap();
        assert!(!valid_session("k1", &format!("99999999999.{rest}"), 1_000));
        assert!(!valid_session("k1", "", 1_000));
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let (a, b) = (new_session("k", 0), new_session("k", 0));
        assert_ne!(csrf_token("k", &a), csrf_token("k", &b));
        assert_eq!(csrf_token("k", &a), csrf_token("k", &a));
    }
}
