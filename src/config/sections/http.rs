//! `[http]`: where the API, the dashboard and the probes listen, the token that opens them, and
//! the address users reach Herald at (`public_url`, for the unsubscribe links); and
//! `[unsubscribe]`, the key that signs those links.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

use super::{super::Secret, Problems};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub addr: String,
    pub api_token: Secret,
    /// The address users' mail clients reach Herald at (`https://herald.example.com`).
    pub public_url: String,
    /// Whether the dashboard's session cookie is always `Secure`; unset: in production only.
    #[serde(default)]
    pub secure_cookies: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsubscribe {
    /// Signs the unsubscribe links (HERALD_UNSUBSCRIBE_KEY, 32+ characters).
    pub key: Secret,
    /// Keys that signed links before a rotation: their links still work.
    pub previous_keys: Vec<Secret>,
    /// An address that also unsubscribes (the `mailto:` of `List-Unsubscribe`); empty: none.
    pub mailto: String,
}

/// One-click unsubscribe: where the links point and the keys that sign and check them.
#[derive(Debug, Clone)]
pub struct UnsubscribeSettings {
    /// `http.public_url`, without a trailing slash.
    pub public_url: String,
    /// The signing key first, then the previous ones.
    pub keys: Vec<Secret>,
    pub mailto: Option<String>,
}

/// The shortest key that signs or checks unsubscribe links.
const MIN_KEY: usize = 32;

/// The unsubscribe links' settings, or `None` when `http.public_url` is empty (emails then carry
/// no link, which production refuses).
pub(super) fn unsubscribe(
    h: &RawHttp,
    u: &RawUnsubscribe,
    production: bool,
    p: &mut Problems,
) -> Option<UnsubscribeSettings> {
    let public_url = h.public_url.trim().trim_end_matches('/');
    if public_url.is_empty() {
        if production {
            p.key(
                "http.public_url",
                "is empty, so emails would carry no unsubscribe link, which Gmail and Yahoo require of bulk senders (RFC 8058); set it to the address users reach Herald at, e.g. \"https://herald.example.com\" (HERALD_PUBLIC_URL)",
            );
        }
        return None;
    }
    match url::Url::parse(public_url) {
        Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && !production) => {}
        Ok(url) if url.scheme() == "http" => p.key(
            "http.public_url",
            format!("is {public_url:?}; in production the links must be https:// (mail clients refuse plain http for one-click unsubscribe)"),
        ),
        Ok(url) => p.key(
            "http.public_url",
            format!("is {public_url:?}, whose scheme is {:?}; write an https:// address, e.g. \"https://herald.example.com\"", url.scheme()),
        ),
        Err(e) => p.key(
            "http.public_url",
            format!("{public_url:?} is not a URL ({e}); write it like \"https://herald.example.com\""),
        ),
    }
    let short = |key: &Secret| key.expose().len() < MIN_KEY;
    if u.key.is_empty() {
        p.key(
            "unsubscribe.key",
            format!("is empty while http.public_url is set; the unsubscribe links need a key of {MIN_KEY}+ random characters, e.g. the output of `openssl rand -hex 32` (HERALD_UNSUBSCRIBE_KEY)"),
        );
    } else if short(&u.key) {
        p.key(
            "unsubscribe.key",
            format!("is {} characters long; use at least {MIN_KEY} random characters, e.g. the output of `openssl rand -hex 32`", u.key.expose().len()),
        );
    }
    if u.previous_keys.iter().any(short) {
        p.key(
            "unsubscribe.previous_keys",
            format!("has a key shorter than {MIN_KEY} characters; list the keys that signed links before, each as it was"),
        );
    }
    let mailto = Some(u.mailto.trim().to_owned()).filter(|m| !m.is_empty());
    if let Some(m) = &mailto
        && crate::domain::Mailbox::parse(m).is_err()
    {
        p.key(
            "unsubscribe.mailto",
            format!("{m:?} is not an email address; write it like \"unsubscribe@example.com\", or leave it empty"),
        );
    }
    let mut keys = vec![u.key.clone()];
    keys.extend(u.previous_keys.iter().cloned());
    Some(UnsubscribeSettings {
        public_url: public_url.to_owned(),
        keys,
        mailto,
    })
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

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unsubscribe_links_need_a_public_url_and_a_key_and_production_needs_them() {
        let s = Settings::load_from(&crate::kinds::defaults(), None, &[]).unwrap();
        assert!(s.unsubscribe.is_none(), "no link without http.public_url");

        let s = Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &env(&[
                ("HERALD_PUBLIC_URL", "https://herald.example.com/"),
                ("HERALD_UNSUBSCRIBE_KEY", "0123456789abcdef0123456789abcdef"),
                (
                    "HERALD__UNSUBSCRIBE__PREVIOUS_KEYS",
                    "[\"fedcba9876543210fedcba9876543210\"]",
                ),
                ("HERALD__UNSUBSCRIBE__MAILTO", "unsubscribe@example.com"),
            ]),
        )
        .unwrap();
        let u = s.unsubscribe.unwrap();
        assert_eq!(u.public_url, "https://herald.example.com");
        assert_eq!(u.keys.len(), 2);
        assert_eq!(u.mailto.as_deref(), Some("unsubscribe@example.com"));

        let err = Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &env(&[
                ("HERALD_PUBLIC_URL", "ftp://herald.example.com"),
                ("HERALD__UNSUBSCRIBE__MAILTO", "not an address"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for want in [
            "http.public_url (HERALD_PUBLIC_URL): is \"ftp://herald.example.com\", whose scheme is \"ftp\"",
            "unsubscribe.key (HERALD_UNSUBSCRIBE_KEY): is empty while http.public_url is set",
            "unsubscribe.mailto (HERALD__UNSUBSCRIBE__MAILTO): \"not an address\" is not an email address",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }

        let err = Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &env(&[
                ("HERALD_ENV", "production"),
                ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("http.public_url (HERALD_PUBLIC_URL): is empty, so emails would carry no unsubscribe link"),
            "{err}"
        );
        let err = Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &env(&[
                ("HERALD_ENV", "production"),
                ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
                ("HERALD_PUBLIC_URL", "http://herald.example.com"),
                ("HERALD_UNSUBSCRIBE_KEY", "short"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("in production the links must be https://"),
            "{err}"
        );
        assert!(
            err.contains("unsubscribe.key (HERALD_UNSUBSCRIBE_KEY): is 5 characters long"),
            "{err}"
        );
        assert!(!err.contains("short"), "a secret is never quoted: {err}");
    }
}
