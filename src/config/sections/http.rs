//! `[http]`: where the API, the dashboard and the probes listen, and the token that opens them.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

use super::{super::Secret, Problems};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub addr: String,
    pub api_token: Secret,
}

/// The address to listen on and the API token (`None` when empty: `/api` and `/ui` answer 403).
pub(super) fn check(h: &RawHttp, p: &mut Problems) -> (SocketAddr, Option<Secret>) {
    let addr = resolve(&h.addr).unwrap_or_else(|message| {
        p.key("http.addr", message);
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let token = Some(h.api_token.clone()).filter(|t| !t.is_empty());
    if let Some(t) = &token
        && t.expose().len() < 16
    {
        p.key(
            "http.api_token",
            format!(
                "is {} characters long; use at least 16 random characters, e.g. the output of `openssl rand -hex 16`",
                t.expose().len()
            ),
        );
    }
    (addr, token)
}

/// `host:port`, where the host is an IP address or a name (`localhost:8080`): a name is resolved
/// once, here, and the first address it gives is the one listened on.
fn resolve(text: &str) -> Result<SocketAddr, String> {
    const HOW: &str = "write it as host:port, e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\" (every interface) or \"localhost:8080\"";
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, port)) = text.trim().rsplit_once(':') else {
        return Err(format!("{text:?} has no port; {HOW}"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("{text:?} has no port number after its ':'; {HOW}"));
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || !host.chars().all(is_name) {
        return Err(format!(
            "{host:?} is neither an IP address nor a host name; {HOW}"
        ));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{host:?} resolves to no address; {HOW}")),
        Err(e) => Err(format!("{host:?} does not resolve ({e}); {HOW}")),
    }
}
