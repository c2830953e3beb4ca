//! Where the tests' servers are: `DATABASE_URL`'s and `REDIS_URL`'s, else the local ones, with
//! each test's own database name, and the Redis databases the tests never touch (11 to 15).
//! Part of the harness (`helpers.rs`), which re-exports it.

use herald::config::redact;

/// The PostgreSQL server tests use when `DATABASE_URL` is not set.
pub const LOCAL_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Redis tests use when `REDIS_URL` is not set: database 0, with a queue name per test.
pub const LOCAL_REDIS: &str = "redis://127.0.0.1:6379/0";

/// The URL of the test database `database`: on `DATABASE_URL`'s server, as its user, with its
/// options, else on [`LOCAL_PG`]. The database `DATABASE_URL` names is not used: each test has
/// its own, and the app creates it through the server's `postgres` database, as
/// [`Env::cleanup_database`] drops it.
pub fn database_url(database: &str) -> String {
    crate::homes::assert_on_servers("database_url");
    database_url_from(env_var("DATABASE_URL").as_deref(), database)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The Redis tests use: `REDIS_URL` (database 0 when it names none), else [`LOCAL_REDIS`].
/// Databases 11 to 15 are refused: other tools keep their data there.
pub fn redis_url() -> String {
    crate::homes::assert_on_servers("redis_url");
    redis_url_from(env_var("REDIS_URL").as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

/// A variable of the test's environment; empty counts as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(super) fn database_url_from(base: Option<&str>, database: &str) -> Result<String, String> {
    let base = base.unwrap_or(LOCAL_PG);
    let mut url = url::Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
        .ok_or_else(|| {
            format!(
                "DATABASE_URL {} is not a PostgreSQL URL: the tests need one such as {LOCAL_PG} \
                 (the server they create their databases on), or leave DATABASE_URL unset",
                redact(base)
            )
        })?;
    url.set_path(&format!("/{database}"));
    Ok(url.into())
}

pub(super) fn redis_url_from(base: Option<&str>) -> Result<String, String> {
    let Some(base) = base else {
        return Ok(LOCAL_REDIS.to_owned());
    };
    let not_redis = || {
        format!(
            "REDIS_URL {} is not a Redis URL: the tests need one such as {LOCAL_REDIS}, or leave \
             REDIS_URL unset",
            redact(base)
        )
    };
    let mut url = url::Url::parse(base).map_err(|_| not_redis())?;
    // `redis+unix:///path?db=N` names its database in the query, `redis://host/N` in the path.
    let named = if url.scheme().ends_with("unix") {
        url.query_pairs()
            .find(|(k, _)| k == "db")
            .map(|(_, v)| v.into_owned())
    } else if url.has_host() {
        Some(url.path().trim_matches('/').to_owned()).filter(|p| !p.is_empty())
    } else {
        return Err(not_redis());
    };
    let db: u32 = match named {
        Some(n) => n.parse().map_err(|_| {
            format!(
                "REDIS_URL {} names the database {n:?}, which is not a number: name one such as \
                 0 ({LOCAL_REDIS})",
                redact(base)
            )
        })?,
        None if url.scheme().ends_with("unix") => 0,
        None => {
            url.set_path("/0");
            0
        }
    };
    if (11..=15).contains(&db) {
        return Err(format!(
            "REDIS_URL {} names database {db}, but the tests never use Redis databases 11 to 15 \
             (other tools keep their data there): name another, such as 0",
            redact(base)
        ));
    }
    Ok(url.into())
}

/// `url` with `password` in it (and `user` when it names none), for tests that check a secret
/// never shows. The tests' servers take any password: PostgreSQL with trust authentication, a
/// Redis with no password of its own.
pub fn with_password(url: &str, user: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    if u.username().is_empty() {
        u.set_username(user).unwrap();
    }
    u.set_password(Some(password)).unwrap();
    u.into()
}
