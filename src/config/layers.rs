//! The layers and how they merge: each kind's schedule, the built-in defaults, a TOML file,
//! environment variables.

use crate::kinds::Kind;

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

pub(super) const DEFAULTS_NAME: &str = "config/default.toml";

/// Environment variables with a well-known name, and the key each one sets.
pub(super) const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SMTP_URL", "mail.smtp_url"),
    ("MAIL_FROM", "mail.from"),
    ("RESEND_API_KEY", "mail.resend.api_key"),
    ("HERALD_API_TOKEN", "http.api_token"),
    ("HERALD_HTTP_ADDR", "http.addr"),
    ("HERALD_ENV", "environment"),
];

/// The lowest layer: `[schedules.<kind>]` with the cron and zone each kind fires at by default.
pub(super) fn kind_schedules() -> toml::Table {
    let mut table = toml::Table::new();
    for kind in Kind::all() {
        let default = kind.schedule();
        for (key, value) in [("cron", default.cron), ("timezone", default.timezone)] {
            set_path(
                &mut table,
                &format!("schedules.{}.{key}", kind.name()),
                toml::Value::String(value.to_owned()),
            )
            .expect("a kind's name is a key");
        }
    }
    table
}

pub(super) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

pub(super) fn set_path(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or("names no key")?;
    let mut t = table;
    for part in parts {
        t = t
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{part} is not a section"))?;
    }
    t.insert(last.to_owned(), value);
    Ok(())
}

/// An environment value is TOML when it parses as one (numbers, booleans, arrays), else a string.
pub(super) fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) if !raw.trim().is_empty() => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        _ => toml::Value::String(raw.to_owned()),
    }
}
