//! Layered settings: each kind's default schedule, built-in `config/default.toml`, then
//! `HERALD_CONFIG`, then the environment.
//!
//! Loading happens in two steps. The layers are merged as TOML and read into [`RawSettings`]
//! (strings, as a person wrote them). [`RawSettings::validate`] then turns every value into its
//! real type and collects *all* problems at once, each naming where the value came from, what is
//! wrong and how to fix it, so that `herald check` can list them in one go.

use std::{
    collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration,
};

use chrono_tz::Tz;
use serde::Deserialize;

use crate::{domain::Mailbox, kinds::Kind};

mod environment;
#[cfg(test)]
mod inputs;
mod layers;
mod mail;
mod secret;

pub use environment::{Environment, shown_folder};
pub use layers::DEFAULTS;
use layers::{DEFAULTS_NAME, ENV_ALIASES, env_value, kind_schedules, merge, set_path};
pub use mail::*;
pub use secret::{Secret, SecretUrl};

/// One thing wrong with the configuration: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
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

/// The settings as written: durations and addresses are still strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// "development" or "production" (HERALD_ENV).
    pub environment: String,
    pub database: RawDatabase,
    pub redis: RawRedis,
    pub queue: RawQueue,
    pub mail: RawMail,
    pub templates: RawTemplates,
    pub http: RawHttp,
    pub shutdown: RawShutdown,
    pub planner: RawPlanner,
    pub retention: RawRetention,
    pub ui: RawUi,
    pub schedules: RawSchedules,
}

/// `[schedules]`: one section per kind of email, named after it, and the switch for all.
#[derive(Debug, Clone)]
pub struct RawSchedules {
    /// Whether a schedule runs when its own section does not say: `false` switches every
    /// schedule off but those set `enabled = true` (tests and benchmarks do so).
    pub enabled: bool,
    pub each: BTreeMap<String, RawSchedule>,
}

// By hand rather than `#[serde(flatten)]`, which loses the path of an error inside a section.
impl<'de> Deserialize<'de> for RawSchedules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSchedules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`enabled` and one section per schedule")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSchedules, A::Error> {
                let mut schedules = RawSchedules {
                    enabled: true,
                    each: BTreeMap::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "enabled" {
                        schedules.enabled = map.next_value()?;
                    } else {
                        schedules.each.insert(key, map.next_value()?);
                    }
                }
                Ok(schedules)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: SecretUrl,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: SecretUrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub name: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: String,
    pub high_water: usize,
    pub dispatch_chunk: usize,
    pub dispatch_interval: String,
    pub redispatch_after: String,
    pub lease: String,
    pub retry_delays: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub addr: String,
    pub api_token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanner {
    pub tick: String,
}

/// How long finished deliveries (and their attempts) are kept, by status.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub sent: String,
    pub failed: String,
    pub skipped: String,
}

/// `[ui]`: the dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    pub retry_per_second: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// The kind's own default unless overridden.
    #[serde(default)]
    pub cron: String,
    /// An IANA zone, or "recipient": each user at the cron's time in their own zone.
    #[serde(default = "recipient")]
    pub timezone: String,
    /// The zone for users whose stored zone is not a zone.
    #[serde(default = "utc")]
    pub fallback_timezone: String,
    /// How late a missed fire may still be sent after a restart; "0s" sends none late.
    #[serde(default = "one_hour")]
    pub catch_up: String,
    /// Staggers each user's send inside this window after the fire time; "0s" sends at once.
    #[serde(default = "zero")]
    pub spread: String,
    /// `None`: as `schedules.enabled` says.
    pub enabled: Option<bool>,
}

fn recipient() -> String {
    "recipient".to_owned()
}
fn utc() -> String {
    "UTC".to_owned()
}
fn one_hour() -> String {
    "1h".to_owned()
}
fn zero() -> String {
    "0s".to_owned()
}

/// Validated settings, ready to use. Secrets print as `***` and URLs without their password.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Production refuses the `file` provider.
    pub environment: Environment,
    pub database_url: SecretUrl,
    pub database_max_connections: u32,
    pub redis_url: SecretUrl,
    pub queue: QueueSettings,
    pub mail: MailSettings,
    pub templates_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// `None` means `/api` is closed (403).
    pub api_token: Option<Secret>,
    pub shutdown_grace: Duration,
    /// When the planner wakes up to look for due fires.
    pub planner_tick: cron::Schedule,
    pub retention: RetentionSettings,
    /// How many failed deliveries a dashboard retry queues per second (at least 1).
    pub ui_retry_per_second: u32,
    pub schedules: Vec<ScheduleSettings>,
}

/// How long a delivery in a final status is kept, counted from its last change (`updated_at`):
/// older ones are deleted with their attempts. Deleting a row frees its dedup key, so a trigger
/// may not reach back further than [`RetentionSettings::trigger_horizon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub sent: Duration,
    pub failed: Duration,
    pub skipped: Duration,
}

impl RetentionSettings {
    /// The smallest retention allowed: a trigger must be able to reach back at least a day.
    pub const MIN: Duration = Duration::from_secs(3 * 86_400);

    /// Margin between the oldest trigger `at` and the shortest retention: two instants with the
    /// same local date (and so the same dedup key) are less than 25 hours apart, DST included.
    pub const MARGIN: Duration = Duration::from_secs(2 * 86_400);

    /// The shortest of the three, with its key.
    pub fn shortest(&self) -> (&'static str, Duration) {
        [
            ("retention.sent", self.sent),
            ("retention.failed", self.failed),
            ("retention.skipped", self.skipped),
        ]
        .into_iter()
        .min_by_key(|(_, d)| *d)
        .expect("three retentions")
    }

    /// How far back a trigger `at` may go: the shortest retention less [`Self::MARGIN`]. Any
    /// delivery with the same dedup key as such an `at` is still on record, so its email is
    /// never sent twice.
    pub fn trigger_horizon(&self) -> Duration {
        self.shortest().1.saturating_sub(Self::MARGIN)
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let day = Duration::from_secs(86_400);
        RetentionSettings {
            sent: 30 * day,
            failed: 90 * day,
            skipped: 30 * day,
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub name: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: Duration,
    pub high_water: usize,
    pub dispatch_chunk: usize,
    pub dispatch_interval: Duration,
    pub redispatch_after: Duration,
    pub lease: Duration,
    pub retry_delays: Vec<Duration>,
}

/// Whose clock a schedule follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneMode {
    /// The whole schedule fires at the cron's time in this zone.
    Fixed(Tz),
    /// Each user gets the email at the cron's time in their own zone.
    Recipient,
}

impl std::fmt::Display for ZoneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoneMode::Fixed(tz) => f.write_str(tz.name()),
            ZoneMode::Recipient => f.write_str("recipient"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub name: String,
    pub kind: Kind,
    pub cron_expr: String,
    pub cron: cron::Schedule,
    pub zone: ZoneMode,
    pub fallback_timezone: Tz,
    pub catch_up: Duration,
    pub spread: Duration,
    pub enabled: bool,
}

impl Settings {
    /// Loads the layers from the real environment and validates them.
    pub fn load() -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let file = std::env::var("HERALD_CONFIG")
            .ok()
            .filter(|s| !s.is_empty());
        Self::load_from(file.as_deref(), &vars)
    }

    /// Loads the defaults, an optional override file, and the given environment variables.
    pub fn load_from(
        file: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        RawSettings::load_from(file, env)?.validate()
    }

    pub fn schedule(&self, name: &str) -> Option<&ScheduleSettings> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

impl RawSettings {
    pub fn load_from(
        file: Option<&str>,
        env: &[(String, String)],
    ) -> Result<RawSettings, ConfigError> {
        let problem = |place: &str, message: String| {
            ConfigError(vec![Problem {
                place: place.into(),
                message,
            }])
        };
        let mut merged = kind_schedules();
        let defaults: toml::Table = DEFAULTS
            .parse()
            .map_err(|e| problem(DEFAULTS_NAME, format!("{e}")))?;
        merge(&mut merged, defaults);
        let mut source = DEFAULTS_NAME.to_owned();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                problem(
                    &format!("HERALD_CONFIG={path}"),
                    format!("cannot read the file ({e}); fix the path or unset HERALD_CONFIG"),
                )
            })?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| problem(path, format!("is not valid TOML: {e}")))?;
            merge(&mut merged, table);
            source = format!("{DEFAULTS_NAME} + {path}");
        }
        for (name, value) in env {
            // The well-known names all hold strings: a token of digits stays a string.
            let (key, value) = if let Some((_, key)) = ENV_ALIASES.iter().find(|(n, _)| n == name) {
                (key.to_string(), toml::Value::String(value.clone()))
            } else if let Some(rest) = name.strip_prefix("HERALD__") {
                (
                    rest.to_ascii_lowercase().replace("__", "."),
                    env_value(value),
                )
            } else {
                continue;
            };
            set_path(&mut merged, &key, value).map_err(|m| problem(name, m))?;
            source.push_str(" + env");
        }
        let de = toml::Value::Table(merged);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            problem(
                &format!("{source}: {path}"),
                format!(
                    "{}; see config/default.toml for every key and its type",
                    e.inner()
                ),
            )
        })
    }

    /// Checks every value and converts it, collecting all the problems.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut p = |place: &str, message: String| {
            problems.push(Problem {
                place: place.into(),
                message,
            })
        };

        let duration = |place: &str, text: &str, p: &mut dyn FnMut(&str, String)| -> Duration {
            parse_duration(text).unwrap_or_else(|m| {
                p(place, m);
                Duration::ZERO
            })
        };

        let q = &self.queue;
        let queue = QueueSettings {
            name: q.name.clone(),
            concurrency: q.concurrency,
            batch_size: q.batch_size,
            heartbeat: duration("queue.heartbeat", &q.heartbeat, &mut p),
            high_water: q.high_water,
            dispatch_chunk: q.dispatch_chunk,
            dispatch_interval: duration("queue.dispatch_interval", &q.dispatch_interval, &mut p),
            redispatch_after: duration("queue.redispatch_after", &q.redispatch_after, &mut p),
            lease: duration("queue.lease", &q.lease, &mut p),
            retry_delays: q
                .retry_delays
                .iter()
                .enumerate()
                .map(|(i, d)| duration(&format!("queue.retry_delays[{i}]"), d, &mut p))
                .collect(),
        };
        if queue.name.trim().is_empty() {
            p(
                "queue.name",
                "is empty; set a queue name such as \"herald:deliveries\"".into(),
            );
        }
        for (place, value) in [
            ("queue.concurrency", queue.concurrency),
            ("queue.batch_size", queue.batch_size),
            ("queue.high_water", queue.high_water),
            ("queue.dispatch_chunk", queue.dispatch_chunk),
        ] {
            if value == 0 {
                p(place, "is 0; it must be at least 1".into());
            }
        }
        if queue.high_water > 5000 {
            p(
                "queue.high_water",
                format!(
                    "is {}; apalis-redis 1.0.0 fails to fetch once about 8,000 jobs are due at once, keep it at 5000 or less",
                    queue.high_water
                ),
            );
        }
        if queue.batch_size > 500 {
            p(
                "queue.batch_size",
                format!(
                    "is {}; apalis-redis moves a fetched batch with one Lua unpack, which fails above about 8,000 ids, and a dead worker's batch is recovered the same way: keep it at 500 or less (near queue.concurrency)",
                    queue.batch_size
                ),
            );
        }
        if queue.heartbeat.is_zero()
            && !q.heartbeat.is_empty()
            && parse_duration(&q.heartbeat).is_ok()
        {
            p("queue.heartbeat", "is 0; use something like \"1s\"".into());
        }
        // Checked only once they parse: a value that does not has its problem already.
        if parse_duration(&q.dispatch_interval).is_ok() {
            if queue.dispatch_interval.is_zero() {
                p(
                    "queue.dispatch_interval",
                    "is 0s; the dispatcher would query PostgreSQL without a pause. Use something like \"200ms\"".into(),
                );
            } else if queue.dispatch_interval > MAX_DISPATCH_INTERVAL {
                p(
                    "queue.dispatch_interval",
                    format!(
                        "is {}; the dispatcher also runs the retries' clock, so a retry due in 2 s would wait up to that long. Use at most {}, e.g. \"200ms\"",
                        humantime::format_duration(queue.dispatch_interval),
                        humantime::format_duration(MAX_DISPATCH_INTERVAL)
                    ),
                );
            }
        }
        if parse_duration(&q.redispatch_after).is_ok()
            && queue.redispatch_after < MIN_REDISPATCH_AFTER
        {
            p(
                "queue.redispatch_after",
                format!(
                    "is {}; a delivery that is only waiting its turn in Redis would be pushed again and again, filling the queue with duplicate jobs. Use at least {}, e.g. \"5m\" (it only matters when Redis loses jobs)",
                    humantime::format_duration(queue.redispatch_after),
                    humantime::format_duration(MIN_REDISPATCH_AFTER)
                ),
            );
        }

        let from = Mailbox::parse(&self.mail.from).unwrap_or_else(|e| {
            p(
                "mail.from (MAIL_FROM)",
                format!("{e}; write it as \"Name <sender@example.com>\" or \"sender@example.com\""),
            );
            Mailbox::parse("herald@localhost").expect("a valid fallback")
        });
        let providers = providers(&self.mail, &mut p);
        let environment = environment::check(&self.environment, &providers, &mut p);
        let mail = MailSettings {
            from,
            providers,
            timeout: duration("mail.timeout", &self.mail.timeout, &mut p),
            pool_size: self.mail.pool_size.max(1),
            configuration_pause: duration(
                "mail.configuration_pause",
                &self.mail.configuration_pause,
                &mut p,
            ),
            probe_interval: duration("mail.probe_interval", &self.mail.probe_interval, &mut p),
            throttle_pause: duration("mail.throttle_pause", &self.mail.throttle_pause, &mut p),
        };
        // A claim must outlive its send: a lease that expires mid-send makes the row due again
        // and another worker sends a second copy. (Workers renew their leases every lease / 3,
        // but one send, which no renewal can interrupt, must fit in one lease.)
        let lease_floor = mail.timeout + Duration::from_secs(4);
        let lease_parses = parse_duration(&q.lease).is_ok();
        if lease_parses && queue.lease.is_zero() {
            p(
                "queue.lease",
                format!(
                    "is 0s; every claim would expire at once and another worker would send the same email again. Use at least {} (mail.timeout + 4 s), e.g. \"2m\"",
                    humantime::format_duration(lease_floor)
                ),
            );
        } else if lease_parses && queue.lease < lease_floor {
            p(
                "queue.lease",
                format!(
                    "is {}, shorter than mail.timeout ({}) plus the 2 s a worker may wait for a provider; a send could outlive its claim and go out twice. Use at least {}",
                    humantime::format_duration(queue.lease),
                    humantime::format_duration(mail.timeout),
                    humantime::format_duration(lease_floor)
                ),
            );
        }

        let http_addr = self.http.addr.parse().unwrap_or_else(|e| {
            p(
                "http.addr (HERALD_HTTP_ADDR)",
                format!(
                    "{:?} is not an address ({e}); write it as \"127.0.0.1:8080\"",
                    self.http.addr
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let api_token = Some(self.http.api_token.clone()).filter(|t| !t.is_empty());
        if let Some(t) = &api_token
            && t.expose().len() < 16
        {
            p(
                "http.api_token (HERALD_API_TOKEN)",
                format!(
                    "is {} characters long; use at least 16 random characters",
                    t.expose().len()
                ),
            );
        }

        for (place, url, schemes) in [
            (
                "database.url (DATABASE_URL)",
                &self.database.url,
                &["postgres", "postgresql"][..],
            ),
            (
                "redis.url (REDIS_URL)",
                &self.redis.url,
                &["redis", "rediss"][..],
            ),
        ] {
            match url::Url::parse(url.expose()) {
                Ok(u) if schemes.contains(&u.scheme()) => {}
                Ok(u) => p(
                    place,
                    format!("has scheme {:?}; expected {}://…", u.scheme(), schemes[0]),
                ),
                Err(e) => p(
                    place,
                    format!(
                        "{url:?} is not a URL ({e}); expected {}://host:port/…",
                        schemes[0]
                    ),
                ),
            }
        }
        let planner_tick = crate::domain::parse_cron(&self.planner.tick).unwrap_or_else(|m| {
            p("planner.tick", m);
            crate::domain::parse_cron("*/5 * * * * *").expect("a valid fallback")
        });

        let retention = retention(&self.retention, &mut p);
        if self.ui.retry_per_second == 0 {
            p(
                "ui.retry_per_second",
                "is 0; a retry would never be released. Use something like 50 (a bulk retry queues that many per second)".into(),
            );
        }

        let mut schedules = Vec::new();
        for (name, raw) in &self.schedules.each {
            let place = format!("schedules.{name}");
            let Ok(kind) = Kind::from_str(name) else {
                p(
                    &place,
                    format!(
                        "is not a known schedule; the schedules are {}",
                        Kind::names()
                    ),
                );
                continue;
            };
            let cron = match crate::domain::parse_cron(&raw.cron) {
                Ok(c) => c,
                Err(m) => {
                    p(&format!("{place}.cron"), m);
                    continue;
                }
            };
            let zone = if raw.timezone.trim() == "recipient" {
                ZoneMode::Recipient
            } else {
                match crate::domain::parse_zone(&raw.timezone) {
                    Ok(tz) => ZoneMode::Fixed(tz),
                    Err(m) => {
                        p(
                            &format!("{place}.timezone"),
                            format!("{m}, or \"recipient\" for each user's own zone"),
                        );
                        continue;
                    }
                }
            };
            let fallback_timezone = crate::domain::parse_zone(&raw.fallback_timezone)
                .unwrap_or_else(|m| {
                    p(&format!("{place}.fallback_timezone"), m);
                    chrono_tz::UTC
                });
            schedules.push(ScheduleSettings {
                name: name.clone(),
                kind,
                cron_expr: raw.cron.clone(),
                cron,
                zone,
                fallback_timezone,
                catch_up: duration(&format!("{place}.catch_up"), &raw.catch_up, &mut p),
                spread: duration(&format!("{place}.spread"), &raw.spread, &mut p),
                enabled: raw.enabled.unwrap_or(self.schedules.enabled),
            });
        }
        // A fire sent late carries its real dedup key: it must still be on record when it is.
        let horizon = retention.trigger_horizon();
        for s in &schedules {
            if s.catch_up >= horizon {
                p(
                    &format!("schedules.{}.catch_up", s.name),
                    format!(
                        "is {}, not shorter than {} ({} less 2 days), after which a delivery and its dedup key may be deleted; keep catch_up to hours",
                        humantime::format_duration(s.catch_up),
                        humantime::format_duration(horizon),
                        retention.shortest().0
                    ),
                );
            }
        }

        let shutdown_grace = duration("shutdown.grace", &self.shutdown.grace, &mut p);
        if shutdown_grace.is_zero() && parse_duration(&self.shutdown.grace).is_ok() {
            p(
                "shutdown.grace",
                "is 0s; on SIGTERM the sends in flight would be cut off and go out again once their lease runs out. Use something like \"25s\", a little less than the time your supervisor waits before it kills (docker's stop_grace_period)".into(),
            );
        }

        for s in &schedules {
            if s.spread > crate::schedule::occurrences::MAX_SPREAD {
                p(
                    &format!("schedules.{}.spread", s.name),
                    format!(
                        "is {}; a spread staggers each user's send inside a window after the fire, at most 1 day: use something like \"30m\"",
                        humantime::format_duration(s.spread)
                    ),
                );
            }
        }

        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Settings {
            environment,
            database_url: self.database.url,
            database_max_connections: self.database.max_connections.max(1),
            redis_url: self.redis.url,
            queue,
            mail,
            templates_dir: PathBuf::from(self.templates.dir),
            http_addr,
            api_token,
            shutdown_grace,
            planner_tick,
            retention,
            ui_retry_per_second: self.ui.retry_per_second,
            schedules,
        })
    }
}

/// The longest `queue.dispatch_interval`: it is also how late a retry may be.
pub const MAX_DISPATCH_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `queue.redispatch_after`: jobs waiting their turn in Redis must not be pushed again.
pub const MIN_REDISPATCH_AFTER: Duration = Duration::from_secs(10);

/// Validates the `retention` section: each value a duration of at least
/// [`RetentionSettings::MIN`].
fn retention(raw: &RawRetention, p: &mut dyn FnMut(&str, String)) -> RetentionSettings {
    let defaults = RetentionSettings::default();
    let mut one = |key: &str, text: &str, default: Duration| match parse_duration(text) {
        Ok(d) if d >= RetentionSettings::MIN => d,
        Ok(d) => {
            p(
                key,
                format!(
                    "is {}; keep deliveries at least {}: a deleted delivery frees its dedup key, and a manual trigger may reach back a day",
                    humantime::format_duration(d),
                    humantime::format_duration(RetentionSettings::MIN)
                ),
            );
            default
        }
        Err(m) => {
            p(key, m);
            default
        }
    };
    RetentionSettings {
        sent: one("retention.sent", &raw.sent, defaults.sent),
        failed: one("retention.failed", &raw.failed, defaults.failed),
        skipped: one("retention.skipped", &raw.skipped, defaults.skipped),
    }
}

/// Parses "250ms", "2s", "5m", "30d" with a message that says how to write one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "{text:?} is not a duration ({e}); write it like \"250ms\", \"2s\", \"5m\" or \"30d\""
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load_from(None, &[]).unwrap();
        // Every kind has a schedule of its name, at the kind's own time.
        assert_eq!(s.schedules.len(), Kind::all().count());
        for kind in Kind::all() {
            let schedule = s.schedule(kind.name()).unwrap();
            assert_eq!(schedule.cron_expr, kind.schedule().cron);
            assert_eq!(schedule.zone.to_string(), kind.schedule().timezone);
            assert!(schedule.enabled);
        }
        assert_eq!(s.queue.retry_delays, [2, 4, 8].map(Duration::from_secs));
        assert!(matches!(s.mail.providers[..], [ProviderSettings::File(_)]));
        assert!(s.api_token.is_none());
    }

    #[test]
    fn environment_overrides() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("SMTP_URL", "smtp://u:p@mail.example.com"),
                ("HERALD__QUEUE__CONCURRENCY", "7"),
                ("HERALD__SCHEDULES__WEEKLY_REPORT__ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.queue.concurrency, 7);
        assert!(!s.schedule("weekly_report").unwrap().enabled);
        let [ProviderSettings::Smtp(smtp)] = &s.mail.providers[..] else {
            panic!()
        };
        assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
        assert_eq!(smtp.credentials, Some(("u".into(), Secret::new("p"))));
    }

    #[test]
    fn one_setting_switches_every_schedule_off_and_a_schedule_can_stay_on() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("HERALD__SCHEDULES__ENABLED", "false"),
                ("HERALD__SCHEDULES__TASK_REMINDERS__ENABLED", "true"),
                ("HERALD__SCHEDULES__WEEKLY_REPORT__CRON", "0 0 18 * * Sun"),
            ]),
        )
        .unwrap();
        let on: Vec<_> = s.schedules.iter().filter(|s| s.enabled).collect();
        assert_eq!(on.len(), 1);
        assert_eq!(on[0].name, "task_reminders");
        let weekly = s.schedule("weekly_report").unwrap();
        assert_eq!(weekly.cron_expr, "0 0 18 * * Sun");
        assert_eq!(weekly.zone, ZoneMode::Recipient);

        let err = Settings::load_from(
            None,
            &env(&[("HERALD__SCHEDULES__MONTHLY__CRON", "0 0 9 1 * *")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "schedules.monthly: is not a known schedule; the schedules are task_reminders"
            ),
            "{err}"
        );
    }

    #[test]
    fn providers_follow_the_keys_or_the_list() {
        let both = Settings::load_from(
            None,
            &env(&[
                ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
                ("RESEND_API_KEY", "re_123"),
            ]),
        )
        .unwrap();
        let names: Vec<_> = both.mail.providers.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["resend", "smtp"]);
        let ProviderSettings::Resend(r) = &both.mail.providers[0] else {
            panic!()
        };
        assert_eq!((r.batch_size, r.requests_per_second), (100, 2));
        assert_eq!(r.base_url.as_str(), "https://api.resend.com/");

        let err = Settings::load_from(
            None,
            &env(&[
                (
                    "HERALD__MAIL__PROVIDERS",
                    "[\"resend\", \"sendgrid\", \"smtp\"]",
                ),
                ("HERALD__MAIL__RESEND__BATCH_SIZE", "101"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("RESEND_API_KEY"), "{err}");
        assert!(err.contains("\"sendgrid\" is not a provider"), "{err}");
        assert!(err.contains("SMTP_URL (mail.smtp_url) is empty"), "{err}");
        assert!(err.contains("mail.resend.batch_size: is 101"), "{err}");
    }

    #[test]
    fn problems_name_the_key_and_the_fix() {
        let err = Settings::load_from(
            None,
            &env(&[
                ("HERALD__SCHEDULES__WEEKLY_REPORT__CRON", "0 17 * * Sun"),
                (
                    "HERALD__SCHEDULES__TASK_REMINDERS__TIMEZONE",
                    "Mars/Olympus",
                ),
                ("HERALD__QUEUE__LEASE", "soon"),
                ("MAIL_FROM", "not an address"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(
            text.contains(
                "schedules.weekly_report.cron: \"0 17 * * Sun\" has 5 fields; expected 6"
            ),
            "{text}"
        );
        assert!(text.contains("schedules.task_reminders.timezone"), "{text}");
        assert!(text.contains("queue.lease"), "{text}");
        assert!(text.contains("MAIL_FROM"), "{text}");
    }

    #[test]
    fn any_redis_database_is_accepted() {
        for db in [0, 11, 15] {
            let url = format!("redis://127.0.0.1:6379/{db}");
            let settings = Settings::load_from(None, &env(&[("REDIS_URL", url.as_str())]));
            assert!(settings.is_ok(), "database {db}: {settings:?}");
        }
    }

    #[test]
    fn a_lease_shorter_than_a_send_is_refused() {
        let err = Settings::load_from(None, &env(&[("HERALD__QUEUE__LEASE", "10s")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("queue.lease: is 10s, shorter than mail.timeout (30s)"),
            "{err}"
        );
    }

    /// The problems loading these variables over the defaults gives, as text.
    fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
        match Settings::load_from(None, &env(pairs)) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_lease_of_zero_is_refused() {
        let got = problems(&[("HERALD__QUEUE__LEASE", "0s")]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("queue.lease: is 0s; every claim would expire at once")
                && got[0].contains("Use at least 34s"),
            "{got:?}"
        );
        assert!(problems(&[("HERALD__QUEUE__LEASE", "34s")]).is_empty());
    }

    #[test]
    fn the_dispatch_interval_is_above_zero_and_at_most_a_minute() {
        let zero = problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "0s")]);
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert!(
            zero[0].starts_with("queue.dispatch_interval: is 0s;") && zero[0].contains("\"200ms\""),
            "{zero:?}"
        );
        let long = problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "5m")]);
        assert_eq!(long.len(), 1, "{long:?}");
        assert!(
            long[0].starts_with("queue.dispatch_interval: is 5m;")
                && long[0].contains("Use at most 1m"),
            "{long:?}"
        );
        assert!(problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "1m")]).is_empty());
    }

    #[test]
    fn redispatch_after_is_at_least_ten_seconds() {
        for value in ["0s", "3s"] {
            let got = problems(&[("HERALD__QUEUE__REDISPATCH_AFTER", value)]);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(
                got[0].starts_with(&format!("queue.redispatch_after: is {value};"))
                    && got[0].contains("Use at least 10s"),
                "{got:?}"
            );
        }
        assert!(problems(&[("HERALD__QUEUE__REDISPATCH_AFTER", "10s")]).is_empty());
    }

    #[test]
    fn a_bad_or_zero_shutdown_grace_is_refused() {
        let bad = problems(&[("HERALD__SHUTDOWN__GRACE", "soon")]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("shutdown.grace: \"soon\" is not a duration"),
            "{bad:?}"
        );
        let zero = problems(&[("HERALD__SHUTDOWN__GRACE", "0s")]);
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert!(
            zero[0].starts_with("shutdown.grace: is 0s;") && zero[0].contains("\"25s\""),
            "{zero:?}"
        );
        let s = Settings::load_from(None, &env(&[("HERALD__SHUTDOWN__GRACE", "40s")])).unwrap();
        assert_eq!(s.shutdown_grace, Duration::from_secs(40));
    }

    #[test]
    fn retention_defaults_and_problems_name_the_key() {
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(s.retention, RetentionSettings::default());
        assert_eq!(s.retention.shortest().1, Duration::from_secs(30 * 86_400));
        assert_eq!(
            s.retention.trigger_horizon(),
            Duration::from_secs(28 * 86_400)
        );

        let err = Settings::load_from(
            None,
            &env(&[
                ("HERALD__RETENTION__SENT", "0s"),
                ("HERALD__RETENTION__FAILED", "a while"),
                ("HERALD__RETENTION__SKIPPED", "1d"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(
            text.contains("retention.sent: is 0s; keep deliveries at least 3days"),
            "{text}"
        );
        assert!(
            text.contains("retention.failed: \"a while\" is not a duration"),
            "{text}"
        );
        assert!(text.contains("retention.skipped: is 1day;"), "{text}");

        let s = Settings::load_from(None, &env(&[("HERALD__RETENTION__SKIPPED", "7d")])).unwrap();
        assert_eq!(s.retention.shortest().0, "retention.skipped");
        assert_eq!(
            s.retention.trigger_horizon(),
            Duration::from_secs(5 * 86_400)
        );
    }

    #[test]
    fn a_catch_up_as_long_as_the_retention_is_refused() {
        let err = Settings::load_from(
            None,
            &env(&[
                ("HERALD__RETENTION__SENT", "3d"),
                ("HERALD__SCHEDULES__TASK_REMINDERS__CATCH_UP", "2d"),
            ]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "schedules.task_reminders.catch_up: is 2days, not shorter than 1day (retention.sent less 2 days)"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            Settings::load_from(None, &env(&[("HERALD__QUEUE__CONCURENCY", "3")])).unwrap_err();
        assert!(err.to_string().contains("queue"), "{err}");
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn smtp_urls() {
        let s = parse_smtp_url("smtp://127.0.0.1:1025?tls=none").unwrap();
        assert_eq!((s.port, s.tls), (1025, SmtpTls::None));
        let s = parse_smtp_url("smtps://a:b%40c@h").unwrap();
        assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
        assert_eq!(s.credentials.unwrap().1.expose(), "b@c");
        assert!(parse_smtp_url("http://h").unwrap_err().contains("smtp://"));
        assert!(
            parse_smtp_url("smtp://h?tls=maybe")
                .unwrap_err()
                .contains("tls=none")
        );
    }
}
