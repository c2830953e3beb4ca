//! The layers and how they merge: each kind's schedule, the built-in defaults, a TOML file,
//! environment variables; and which input set each value.

use super::KindDefaults;
use super::problems::{Origins, Problems};

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Environment variables with a well-known name, and the key each one sets.
pub(super) const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SOURCE_URL", "source.url"),
    ("SMTP_URL", "mail.smtp_url"),
    ("MAIL_FROM", "mail.from"),
    ("RESEND_API_KEY", "mail.resend.api_key"),
    ("RESEND_WEBHOOK_SECRET", "mail.resend.webhook_secret"),
    ("DKIM_KEY_FILE", "mail.dkim.key_file"),
    ("DKIM_SELECTOR", "mail.dkim.selector"),
    ("DKIM_DOMAIN", "mail.dkim.domain"),
    ("HERALD_API_TOKEN", "http.api_token"),
    ("HERALD_HTTP_ADDR", "http.addr"),
    ("HERALD_PUBLIC_URL", "http.public_url"),
    ("HERALD_APP_URL", "app.url"),
    ("HERALD_UNSUBSCRIBE_KEY", "unsubscribe.key"),
    ("HERALD_ENV", "environment"),
];

/// Every layer merged, and what each value's input was.
pub(super) struct Layers {
    /// The two lowest layers (each kind's schedule, then `config/default.toml`): what a value
    /// that cannot be read goes back to, so that the rest can still be checked.
    pub base: toml::Table,
    /// Every layer, later ones winning.
    pub merged: toml::Table,
    pub origins: Origins,
}

/// Merges the layers. A file that cannot be read or a variable that names no key is reported
/// and left out; the other layers are still read.
pub(super) fn read(
    kinds: &[KindDefaults],
    file: Option<&str>,
    env: &[(String, String)],
    problems: &mut Problems,
) -> Layers {
    let mut base = kind_schedules(kinds);
    let defaults: toml::Table = DEFAULTS
        .parse()
        .expect("config/default.toml is valid TOML (the config tests load it)");
    merge(&mut base, defaults);
    let mut merged = base.clone();
    let mut origins = Origins::default();
    if let Some(path) = file {
        match read_file(path) {
            Ok(table) => {
                record(&mut origins, "", &table, &format!("in {path}"));
                merge(&mut merged, table);
            }
            Err(message) => problems.input(&format!("HERALD_CONFIG={path}"), message),
        }
    }
    for (name, value) in env {
        let Some((key, value)) = env_setting(name, value) else {
            continue;
        };
        match set_path(&mut merged, &key, value) {
            Ok(()) => origins.set(&key, name.as_str()),
            Err(m) => problems.input(
                name,
                format!("sets {key:?}, but {m}; name a key of config/default.toml, as HERALD__SECTION__KEY"),
            ),
        }
    }
    Layers {
        base,
        merged,
        origins,
    }
}

/// The file named by `HERALD_CONFIG`, as TOML. A syntax error names its line, without quoting
/// it: the line may hold a password.
fn read_file(path: &str) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the file ({e}); fix the path or unset HERALD_CONFIG"))?;
    text.parse().map_err(|e: toml::de::Error| {
        let start = e.span().map_or(0, |span| span.start);
        let line = text[..start.min(text.len())].matches('\n').count() + 1;
        format!(
            "is not valid TOML at line {line}: {}; fix the file or unset HERALD_CONFIG",
            e.message().trim_end()
        )
    })
}

/// Notes `input` as the origin of every value in `table` (a section's keys, not the section).
fn record(origins: &mut Origins, prefix: &str, table: &toml::Table, input: &str) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => record(origins, &format!("{path}."), inner, input),
            _ => origins.set(&path, input),
        }
    }
}

/// The key an environment variable sets, and its value; `None` for a variable Herald does not
/// read.
fn env_setting(name: &str, value: &str) -> Option<(String, toml::Value)> {
    // The well-known names all hold strings: a token of digits stays a string.
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(n, _)| *n == name) {
        return Some((key.to_string(), toml::Value::String(value.to_owned())));
    }
    let rest = name.strip_prefix("HERALD__")?;
    Some((
        rest.to_ascii_lowercase().replace("__", "."),
        env_value(value),
    ))
}

/// The lowest layer: `[schedules.<kind>]` with the cron and zone each kind fires at by default.
fn kind_schedules(kinds: &[KindDefaults]) -> toml::Table {
    let mut table = toml::Table::new();
    for kind in kinds {
        for (key, value) in [
            ("cron", kind.cron),
            ("timezone", kind.timezone),
            ("link", kind.link),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        {
            set_path(
                &mut table,
                &format!("schedules.{}.{key}", kind.name),
                toml::Value::String(value.to_owned()),
            )
            .expect("a kind's name is a key");
        }
        if !kind.enabled {
            set_path(
                &mut table,
                &format!("schedules.{}.enabled", kind.name),
                toml::Value::Boolean(false),
            )
            .expect("a kind's name is a key");
        }
    }
    table
}

fn merge(base: &mut toml::Table, over: toml::Table) {
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
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) if !raw.trim().is_empty() => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        _ => toml::Value::String(raw.to_owned()),
    }
}
