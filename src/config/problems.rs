//! The problems found while loading, each naming its key, the input that set it and the fix.

use std::{collections::BTreeMap, fmt};

use super::layers::ENV_ALIASES;

/// One thing wrong with the configuration: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key (`queue.lease`), or the input itself when no key is at fault (`HERALD_CONFIG=…`).
    pub place: String,
    /// What set the value: an environment variable (`HERALD__QUEUE__LEASE`), `in <file>`, or the
    /// variable that would set it when the value is a default.
    pub input: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            Some(input) => write!(f, "{} ({input}): {}", self.place, self.message),
            None => write!(f, "{}: {}", self.place, self.message),
        }
    }
}

/// Every problem found while loading; shown one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Which input set each key: `HERALD__QUEUE__LEASE`, `in /etc/herald.toml`. Keys left to the
/// defaults are not in it.
#[derive(Debug, Clone, Default)]
pub(super) struct Origins(BTreeMap<String, String>);

impl Origins {
    pub(super) fn set(&mut self, key: &str, input: impl Into<String>) {
        self.0.insert(key.to_owned(), input.into());
    }

    /// The input that set `key`, or one that set a key inside it (`schedules.monthly` is named
    /// after `HERALD__SCHEDULES__MONTHLY__CRON`).
    fn of(&self, key: &str) -> Option<&str> {
        if let Some(input) = self.0.get(key) {
            return Some(input);
        }
        let inside = format!("{key}.");
        self.0
            .range(inside.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&inside))
            .map(|(_, input)| input.as_str())
    }
}

/// The collector every section pushes its problems into.
#[derive(Debug, Default)]
pub(super) struct Problems {
    origins: Origins,
    found: Vec<Problem>,
}

impl Problems {
    /// From now on, problems with a key name the input that set it.
    pub(super) fn know_origins(&mut self, origins: Origins) {
        self.origins = origins;
    }

    /// A problem with the value of `key` (`queue.lease`, `mail.providers[1]`): the input that
    /// set it is looked up and shown beside it. A key written with its variable, as in
    /// `mail.smtp_url (SMTP_URL)`, is looked up the same way.
    pub(super) fn key(&mut self, key: &str, message: impl Into<String>) {
        let key = key.split(" (").next().unwrap_or(key);
        let bare = key.split('[').next().unwrap_or(key);
        let input = self
            .origins
            .of(bare)
            .map(str::to_owned)
            .or_else(|| alias_of(bare).map(str::to_owned));
        self.found.push(Problem {
            place: key.to_owned(),
            input,
            message: message.into(),
        });
    }

    /// A problem with an input as a whole (`HERALD_CONFIG=…`, a variable that names no key).
    pub(super) fn input(&mut self, input: &str, message: impl Into<String>) {
        self.found.push(Problem {
            place: input.to_owned(),
            input: None,
            message: message.into(),
        });
    }

    /// The form the older checks (`mail.rs`, `environment.rs`) take: a key and a message.
    pub(super) fn pusher(&mut self) -> impl FnMut(&str, String) + '_ {
        |key, message| self.key(key, message)
    }

    /// `value` when nothing was found, else every problem.
    pub(super) fn or<T>(self, value: T) -> Result<T, ConfigError> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.found))
        }
    }

    /// Every problem found so far.
    pub(super) fn into_error(self) -> ConfigError {
        ConfigError(self.found)
    }
}

/// The well-known variable that sets `key`, if any (`SMTP_URL` for `mail.smtp_url`).
fn alias_of(key: &str) -> Option<&'static str> {
    ENV_ALIASES
        .iter()
        .find(|(_, k)| *k == key)
        .map(|(name, _)| *name)
}
