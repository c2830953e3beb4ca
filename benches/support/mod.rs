//! What the benches share: the real `herald` daemon as a child process, the counting SMTP sink
//! they send to, knobs from the environment and the median of repetitions.

#![allow(dead_code)]

pub mod daemon;
pub mod sink;
pub mod storage;
// Cargo builds a bench with `--cfg test` but without the test harness, which drops the sink's
// `#[test]` functions and leaves their imports unused.
#[allow(unused_imports)]
#[path = "../../tests/support/smtp_sink.rs"]
pub mod smtp_sink;

use std::str::FromStr;

/// PostgreSQL without a database name; each bench adds its own database.
pub const PG: &str = "postgres://postgres@127.0.0.1:5432";
/// Redis database 0: a bench keeps to its own queue name (its keys' prefix) and deletes them.
/// Databases 11 to 15 belong to other tools.
pub const REDIS: &str = "redis://127.0.0.1:6379/0";

/// The PostgreSQL server, as the tests find it: `DATABASE_URL`'s (its user, host and options;
/// the bench makes databases of its own there) when set, else [`PG`]. `database(name)` is the URL
/// of one database on it.
pub fn pg_server() -> anyhow::Result<url::Url> {
    let text = std::env::var("DATABASE_URL").unwrap_or_default();
    let text = if text.trim().is_empty() {
        PG
    } else {
        text.trim()
    };
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "DATABASE_URL is not a PostgreSQL URL: the bench needs one such as {PG} (the server it makes its databases on), or leave DATABASE_URL unset"
            )
        })
}

/// The URL of `name` on `server`.
pub fn database(server: &url::Url, name: &str) -> String {
    let mut url = server.clone();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The Redis, as the tests find it: `REDIS_URL` (database 0 when it names none) when set, else
/// [`REDIS`]. Databases 11 to 15 are refused.
pub fn redis_url() -> anyhow::Result<String> {
    let text = std::env::var("REDIS_URL").unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(REDIS.to_owned());
    }
    let mut url = url::Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "redis" | "rediss"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "REDIS_URL is not a Redis URL: the bench needs one such as {REDIS}, or leave REDIS_URL unset"
            )
        })?;
    let db = url.path().trim_matches('/').to_owned();
    let db: u32 = if db.is_empty() {
        0
    } else {
        db.parse().map_err(|_| {
            anyhow::anyhow!(
                "REDIS_URL names the database {db:?}, which is not a number; name one such as 0"
            )
        })?
    };
    anyhow::ensure!(
        !(11..=15).contains(&db),
        "REDIS_URL names database {db}, but Redis databases 11 to 15 belong to other tools; use 0"
    );
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

/// The settings of a bench that plans in-process and sends nothing: Herald's state in `database`
/// on [`PG`], every schedule off (the bench plans by hand), plus `extra` variables.
pub fn planning_settings(
    database: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<herald::config::Settings> {
    let base = [
        ("DATABASE_URL", format!("{PG}/{database}")),
        ("REDIS_URL", REDIS.to_owned()),
        // Settings want one; nothing is sent.
        ("SMTP_URL", "smtp://127.0.0.1:25?tls=none".into()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".into()),
        (
            "HERALD__TEMPLATES__DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
        ),
        ("HERALD__SCHEDULES__ENABLED", "false".into()),
    ];
    let vars: Vec<(String, String)> = base
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Ok(herald::config::Settings::load_from(
        &herald::kinds::defaults(),
        None,
        &vars,
    )?)
}

/// A knob: the variable's value, else `default`.
pub fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// A numeric knob; a value that is not a number is an error naming the variable.
pub fn env_num<T: FromStr>(key: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(key) {
        Err(_) => Ok(default),
        Ok(text) => text.trim().parse().map_err(|_| {
            anyhow::anyhow!("{key}={text:?} is not a number; write it like {key}=1000")
        }),
    }
}

/// A figure of a `/proc/<pid>/status` file (`VmHWM:`, `VmRSS:`) in MB; NaN when unreadable.
pub fn rss_mb_of(status_file: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(status_file).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) spent so far by the processes whose command name is `comm`
/// (`"postgres"`: the server and every backend alive now) or, with `None`, by this process.
/// Clock ticks are read from `/proc/<pid>/stat` at 100 per second, Linux's `USER_HZ`; the
/// difference of two readings is what was spent between them.
pub fn cpu_seconds(comm: Option<&str>) -> f64 {
    let of = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // Fields 14 to 17 of the file (utime, stime, and the same of waited-for children, so
        // that a backend that exits still counts in the server's figure) follow the name.
        let ticks = (11..15)
            .map(|i| fields.get(i)?.parse::<f64>().ok())
            .sum::<Option<f64>>()?;
        Some((name, ticks / 100.0))
    };
    let Some(comm) = comm else {
        return std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| of(&s))
            .map_or(f64::NAN, |(_, secs)| secs);
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| of(&s))
        .filter(|(name, _)| name == comm)
        .map(|(_, secs)| secs)
        .sum()
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Median, min and max, as the peers print them (the median of an even count is the mean of
/// the two middle values).
pub fn stat3(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// The value at quantile `q` (0 to 1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Plans `schedule` for every user through the API; returns how many deliveries it planned.
pub async fn trigger(addr: &str, token: &str, schedule: &str) -> anyhow::Result<i64> {
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/api/schedules/{schedule}/trigger"))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "POST /api/schedules/{schedule}/trigger answered {status}: {body}"
    );
    anyhow::Context::with_context(body["planned"].as_i64(), || {
        format!("the trigger's answer has no count `planned`: {body}")
    })
}
