//! The doors of the API: the bearer token (checked before anything else under `/api`, so an
//! unknown path or a wrong method tells nothing to a caller without it), and a limit on failed
//! attempts per client address, shared by the bearer check, `/metrics` and the dashboard's login.
//!
//! # The limit
//!
//! A client address may fail [`MAX_FAILURES`] times in [`WINDOW`]; after that every attempt from
//! it, right or wrong, is answered 429 with `Retry-After` until the window that began with its
//! first failure ends. Other addresses are not affected. The counts live in the process (a small
//! map, pruned as it grows): with several Herald processes behind a balancer, an address may fail
//! that many times at each. The address is the TCP peer's: behind a reverse proxy every client
//! shares the proxy's, so a guesser there locks the others out for at most a minute.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::Secret;

/// Failed attempts an address may make in a [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses kept before expired entries are swept out.
const SWEEP_AT: usize = 10_000;

/// Failed attempts per client address (see the module's doc).
#[derive(Debug, Clone, Default)]
pub struct Failures(Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>);

impl Failures {
    /// `Err(wait)` while `ip` is locked out, with how long is left.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.0.lock().expect("the failures map is never poisoned");
        match map.get(&ip) {
            Some((since, n)) if *n >= MAX_FAILURES => {
                let left = WINDOW.saturating_sub(since.elapsed());
                if left.is_zero() { Ok(()) } else { Err(left) }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `ip`.
    pub fn fail(&self, ip: IpAddr) {
        let mut map = self.0.lock().expect("the failures map is never poisoned");
        if map.len() >= SWEEP_AT {
            map.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if entry.1 == MAX_FAILURES {
            tracing::warn!(client = %ip, "too many failed sign-ins from one address; refused for a minute");
        }
    }
}

/// The client's address: the TCP peer, or `0.0.0.0` when the app is driven without a socket.
pub fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The answer's words for a locked-out address, with what to do.
pub fn too_many(wait: Duration) -> String {
    format!(
        "too many failed attempts with a wrong token from this address ({MAX_FAILURES} in {}s); \
         wait {}s (Retry-After) and try again with the right HERALD_API_TOKEN",
        WINDOW.as_secs(),
        wait.as_secs().max(1)
    )
}

/// Whether the request carries `Authorization: Bearer <expected>`; the scheme's name is
/// matched in any case, as HTTP asks (RFC 9110, section 11.1).
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start_matches(' '));
    // Constant time, so the comparison does not leak how much of a guess was right.
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The bearer check of a request; `Ok` lets it through.
fn admit(state: &AppState, request: &Request, required: bool) -> Result<(), ApiError> {
    let Some(expected) = state.settings.api_token.as_ref().map(Secret::expose) else {
        return if required {
            Err(ApiError::Closed)
        } else {
            Ok(())
        };
    };
    let ip = client_ip(request);
    state
        .failures
        .check(ip)
        .map_err(ApiError::TooManyFailures)?;
    if bearer_matches(request.headers(), expected) {
        Ok(())
    } else {
        state.failures.fail(ip);
        Err(ApiError::Unauthorized)
    }
}

/// Every request under `/api`, known path or not: the token first.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    admit(&state, &request, true)?;
    Ok(next.run(request).await)
}

/// `/metrics` asks for the API's bearer token when one is set, and is open otherwise (like
/// `/readyz`: counts and states, no addresses, no content, no secrets).
pub async fn metrics_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    admit(&state, &request, false)?;
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_after_its_failures_and_the_others_are_not() {
        let f = Failures::default();
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        );
        for _ in 0..MAX_FAILURES - 1 {
            f.fail(a);
        }
        assert!(f.check(a).is_ok());
        f.fail(a);
        let wait = f.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= WINDOW, "{wait:?}");
        assert!(f.check(b).is_ok());
        assert!(too_many(wait).contains("Retry-After"));
    }
}
