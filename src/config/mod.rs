//! Layered settings: each kind's default schedule, built-in `config/default.toml`, then
//! `HERALD_CONFIG`, then the environment.
//!
//! Loading happens in three steps. The layers are merged as TOML, noting which input (a file, a
//! variable) set each value ([`layers`]). The result is read into [`RawSettings`] (strings, as a
//! person wrote them), reporting every unknown key and every value of the wrong type
//! ([`reading`]). Then each section is checked and turned into its real type ([`sections`]).
//! All the problems of all three steps are collected and reported at once, each naming its key,
//! the input that set it and how to fix it, so that `herald check` can list them in one go.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[cfg(test)]
mod deploy;
mod environment;
#[cfg(test)]
mod home_tests;
#[cfg(test)]
mod inputs;
mod layers;
mod mail;
mod problems;
mod reading;
mod secret;
mod sections;
#[cfg(test)]
mod tests;

pub use environment::{Environment, shown_folder};
pub use layers::DEFAULTS;
pub use mail::*;
pub use problems::{ConfigError, Problem};
pub use secret::{Secret, SecretUrl, redact};
pub use sections::{
    RawSettings,
    daemon::{AppSettings, RawApp, RawPlanner, RawShutdown, RawTemplates, RawUi},
    http::{RawHttp, RawUnsubscribe, UnsubscribeSettings},
    queue::{LEASE_RULE, MAX_DISPATCH_INTERVAL, MIN_REDISPATCH_AFTER, QueueSettings, RawQueue},
    retention::{RawRetention, RetentionSettings},
    schedules::{
        KindDefaults, MAX_SPREAD, RawSchedule, RawSchedules, ScheduleSettings, ZoneMode, kind_names,
    },
    stores::{Home, RawDatabase, RawRedis, RawSource, RawState, Servers},
};

/// Validated settings, ready to use. Secrets print as `***` and URLs without their password.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Production refuses the `file` provider.
    pub environment: Environment,
    /// Where the state and the queue live: one SQLite file, or PostgreSQL and Redis.
    pub home: Home,
    /// `source.url`: the app's database; `None` reads the views from Herald's own.
    pub source_url: Option<SecretUrl>,
    pub queue: QueueSettings,
    pub mail: MailSettings,
    pub templates_dir: PathBuf,
    /// `templates.default_locale`: the language of users whose own has no messages.
    pub default_locale: String,
    /// `[app]`: the host app's address for the emails' buttons; `None` without `app.url`.
    pub app: Option<AppSettings>,
    /// `http.addr`, a host name already resolved.
    pub http_addr: SocketAddr,
    /// `None` means `/api` and `/ui` are closed (403).
    pub api_token: Option<Secret>,
    /// `http.secure_cookies`: the dashboard's session cookie is always `Secure` (else only when
    /// a proxy sends `X-Forwarded-Proto: https`); unset, on in production.
    pub secure_cookies: bool,
    /// One-click unsubscribe links; `None` without `http.public_url` (development only).
    pub unsubscribe: Option<UnsubscribeSettings>,
    pub shutdown_grace: Duration,
    /// When the planner wakes up to look for due fires.
    pub planner_tick: cron::Schedule,
    pub retention: RetentionSettings,
    /// How many failed deliveries a dashboard retry queues per second (at least 1).
    pub ui_retry_per_second: u32,
    pub schedules: Vec<ScheduleSettings>,
}

impl Settings {
    /// Loads the layers from the real environment and validates them. `kinds` is what the
    /// kinds registry says of each kind (`kinds::defaults()`): the lowest layer, and the
    /// schedules there may be.
    pub fn load(kinds: &[KindDefaults]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let file = std::env::var("HERALD_CONFIG")
            .ok()
            .filter(|s| !s.is_empty());
        Self::load_from(kinds, file.as_deref(), &vars)
    }

    /// Loads the defaults, an optional override file, and the given environment variables.
    pub fn load_from(
        kinds: &[KindDefaults],
        file: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        match read(kinds, file, env) {
            (Some(raw), problems) => raw.validate(kinds, problems),
            (None, problems) => Err(problems.into_error()),
        }
    }

    /// PostgreSQL and Redis, unless Herald runs embedded.
    pub fn servers(&self) -> Option<&Servers> {
        match &self.home {
            Home::Servers(s) => Some(s),
            Home::Embedded { .. } => None,
        }
    }

    pub fn schedule(&self, name: &str) -> Option<&ScheduleSettings> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

/// The first two steps: the layers merged and read into [`RawSettings`], with the problems
/// found so far.
fn read(
    kinds: &[KindDefaults],
    file: Option<&str>,
    env: &[(String, String)],
) -> (Option<RawSettings>, problems::Problems) {
    let mut problems = problems::Problems::default();
    let layers = layers::read(kinds, file, env, &mut problems);
    problems.know_origins(layers.origins);
    let raw = reading::read(layers.merged, &layers.base, &mut problems);
    (raw, problems)
}

/// Parses "250ms", "2s", "5m", "30d" with a message that says how to write one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "{text:?} is not a duration ({e}); write it like \"250ms\", \"2s\", \"5m\" or \"30d\""
        )
    })
}
