//! `[state]`, `[database]` and `[redis]`: where Herald keeps its state and queue (one SQLite
//! file, or PostgreSQL and Redis), and `[source]`, where the app's data is.

use std::path::PathBuf;

use serde::Deserialize;

use super::{super::SecretUrl, Problems};

/// Where Herald keeps its state and its queue.
#[derive(Debug, Clone)]
pub enum Home {
    /// One SQLite file and one process (`state.file`): neither `database.url` nor `redis.url`
    /// is set.
    Embedded { file: PathBuf },
    /// PostgreSQL and Redis, for several processes: both are set.
    Servers(Servers),
}

/// PostgreSQL and Redis.
#[derive(Debug, Clone)]
pub struct Servers {
    pub database_url: SecretUrl,
    /// `database.max_connections`, at least 1: the workers' pool.
    pub max_connections: u32,
    pub redis_url: SecretUrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub file: String,
}

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

/// Embedded with neither URL, on the servers with both; one without the other is a problem that
/// names the two ways to run.
pub(super) fn home(state: &RawState, d: &RawDatabase, r: &RawRedis, p: &mut Problems) -> Home {
    const WAYS: &str = "Herald runs either embedded (neither database.url nor redis.url set: its \
        state and queue in the SQLite file state.file, one process) or on PostgreSQL and Redis \
        (both set, any number of processes)";
    match (d.url.is_empty(), r.url.is_empty()) {
        (true, true) => {
            let file = state.file.trim();
            if file.is_empty() {
                p.key(
                    "state.file",
                    "is empty; name the SQLite file Herald keeps its state in, such as \"herald.db\" (or set DATABASE_URL and REDIS_URL)".to_owned(),
                );
            }
            Home::Embedded { file: file.into() }
        }
        (database_unset, redis_unset) => {
            if redis_unset {
                p.key("redis.url", format!("is not set, but database.url is; {WAYS}: set REDIS_URL too, or unset DATABASE_URL"));
            } else {
                check_url("redis.url", &r.url, &["redis", "rediss"], p);
            }
            if database_unset {
                p.key("database.url", format!("is not set, but redis.url is; {WAYS}: set DATABASE_URL too, or unset REDIS_URL"));
            } else {
                check_url("database.url", &d.url, &["postgres", "postgresql"], p);
            }
            Home::Servers(Servers {
                database_url: d.url.clone(),
                max_connections: d.max_connections.max(1),
                redis_url: r.url.clone(),
            })
        }
    }
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
