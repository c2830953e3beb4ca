//! Layered settings: built-in `config/default.toml`, then `HERALD_CONFIG`, then the environment.
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

use crate::domain::{Kind, Mailbox};

mod environment;
#[cfg(test)]
mod inputs;
mod layers;
mod mail;
mod secret;

pub use environment::{Environment, shown_folder};
pub use layers::DEFAULTS;
use layers::{DEFAULTS_NAME, ENV_ALIASES, env_value, merge, set_path};
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
    pub schedules: BTreeMap<String, RawSchedule>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
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
    #[serde(default = "yes")]
    pub enabled: bool,
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
fn yes() -> bool {
    true
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
    pub schedules: Vec<ScheduleSettings>,
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
        let mut merged: toml::Table = DEFAULTS
            .parse()
            .map_err(|e| problem(DEFAULTS_NAME, format!("{e}")))?;
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
        // and another worker sends a second copy.
        let lease_floor = mail.timeout + Duration::from_secs(4);
        if !queue.lease.is_zero() && queue.lease < lease_floor {
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

        let mut schedules = Vec::new();
        for (name, raw) in &self.schedules {
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
                enabled: raw.enabled,
            });
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
            shutdown_grace: duration("shutdown.grace", &self.shutdown.grace, &mut |_, _| {}),
            planner_tick,
            schedules,
        })
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
        assert_eq!(s.schedules.len(), 3);
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
