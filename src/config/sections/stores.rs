//! `[database]` and `[redis]`: where PostgreSQL and Redis are.

use serde::Deserialize;

use super::{super::SecretUrl, Problems};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: SecretUrl,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub url: SecretUrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: SecretUrl,
}

/// The database URL and the pool's size (at least 1).
pub(super) fn database(d: &RawDatabase, p: &mut Problems) -> (SecretUrl, u32) {
    check_url("database.url", &d.url, &["postgres", "postgresql"], p);
    (d.url.clone(), d.max_connections.max(1))
}

/// The app's database, `None` for Herald's own.
pub(super) fn source(s: &RawSource, p: &mut Problems) -> Option<SecretUrl> {
    if s.url.is_empty() {
        return None;
    }
    check_url(
        "source.url",
        &s.url,
        &["postgres", "postgresql", "mysql", "mariadb", "sqlite"],
        p,
    );
    Some(s.url.clone())
}

pub(super) fn redis(r: &RawRedis, p: &mut Problems) -> SecretUrl {
    check_url("redis.url", &r.url, &["redis", "rediss"], p);
    r.url.clone()
}

/// A URL with one of `schemes`. The message shows it with its password replaced.
fn check_url(key: &str, url: &SecretUrl, schemes: &[&str], p: &mut Problems) {
    match url::Url::parse(url.expose()) {
        Ok(u) if schemes.contains(&u.scheme()) => {}
        Ok(u) => {
            let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://…")).collect();
            p.key(
                key,
                format!(
                    "has scheme {:?}; expected one of {}",
                    u.scheme(),
                    expected.join(", ")
                ),
            )
        }
        Err(e) => p.key(
            key,
            format!(
                "{url:?} is not a URL ({e}); expected {}://host:port/…",
                schemes[0]
            ),
        ),
    }
}
