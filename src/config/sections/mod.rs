//! The settings as written ([`RawSettings`]) and their checks, one module per section; each
//! check pushes what it finds into the shared [`Problems`].

use std::time::Duration;

use serde::Deserialize;

use super::{
    MailSettings, ProviderSettings, RawMail, Settings, environment, parse_duration,
    problems::{ConfigError, Problems},
};

pub mod daemon;
pub mod dkim;
pub mod http;
pub mod mail;
pub mod queue;
pub mod retention;
pub mod schedules;
pub mod stores;

use daemon::{RawApp, RawPlanner, RawShutdown, RawTemplates, RawUi};
use http::RawHttp;
use queue::RawQueue;
use retention::RawRetention;
use schedules::RawSchedules;
use stores::{RawDatabase, RawRedis, RawSource, RawState};

/// The settings as written: durations and addresses are still strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// "development" or "production" (HERALD_ENV).
    pub environment: String,
    pub state: RawState,
    pub database: RawDatabase,
    pub source: RawSource,
    pub redis: RawRedis,
    pub queue: RawQueue,
    pub mail: RawMail,
    pub templates: RawTemplates,
    pub app: RawApp,
    pub http: RawHttp,
    pub unsubscribe: http::RawUnsubscribe,
    pub shutdown: RawShutdown,
    pub planner: RawPlanner,
    pub retention: RawRetention,
    pub ui: RawUi,
    pub schedules: RawSchedules,
}

impl RawSettings {
    /// The longest a send may take, and the key that says so: `mail.timeout` (SMTP), or
    /// `mail.resend.timeout` when Resend is a provider and its timeout is longer. `None` when
    /// one of them does not parse (that is reported on its own).
    fn longest_send_timeout(&self, mail: &MailSettings) -> Option<(&'static str, Duration)> {
        let mut longest = ("mail.timeout", parse_duration(&self.mail.timeout).ok()?);
        let resend = mail
            .providers
            .iter()
            .any(|p| matches!(p, ProviderSettings::Resend(_)));
        if resend {
            let timeout = parse_duration(&self.mail.resend.timeout).ok()?;
            if timeout > longest.1 {
                longest = ("mail.resend.timeout", timeout);
            }
        }
        Some(longest)
    }

    /// Checks every section and converts it; with any problem, here or found before (in
    /// `problems`), the error lists them all.
    pub(super) fn validate(
        self,
        kinds: &[schedules::KindDefaults],
        mut problems: Problems,
    ) -> Result<Settings, ConfigError> {
        let p = &mut problems;
        let home = stores::home(&self.state, &self.database, &self.redis, p);
        let source_url = stores::source(&self.source, p);
        let queue = queue::check(&self.queue, p);
        let mail = mail::check(&self.mail, p);
        queue::check_lease(
            parse_duration(&self.queue.lease).ok(),
            self.longest_send_timeout(&mail),
            p,
        );
        let environment = environment::check(&self.environment, &mail.providers, &mut p.pusher());
        let (http_addr, api_token) = http::check(&self.http, p);
        let secure_cookies = self
            .http
            .secure_cookies
            .unwrap_or(environment == super::Environment::Production);
        let unsubscribe = http::unsubscribe(
            &self.http,
            &self.unsubscribe,
            environment == super::Environment::Production,
            p,
        );
        let retention = retention::check(&self.retention, p);
        let schedules = schedules::check(&self.schedules, kinds, &retention, p);
        let app = daemon::app(&self.app, p);
        let default_locale = daemon::default_locale(&self.templates, p);
        let shutdown_grace = daemon::shutdown_grace(&self.shutdown, p);
        let planner_tick = daemon::planner_tick(&self.planner, p);
        let ui_retry_per_second = daemon::ui_retry_per_second(&self.ui, p);
        problems.or(Settings {
            environment,
            home,
            source_url,
            queue,
            mail,
            templates_dir: self.templates.dir.into(),
            default_locale,
            app,
            http_addr,
            api_token,
            secure_cookies,
            unsubscribe,
            shutdown_grace,
            planner_tick,
            retention,
            ui_retry_per_second,
            schedules,
        })
    }
}

/// Reads a duration, reporting a bad one under `key`: `None` then, and the checks of its value
/// are skipped (the settings are not used when there is a problem).
fn duration(key: &str, text: &str, problems: &mut Problems) -> Option<std::time::Duration> {
    parse_duration(text)
        .map_err(|message| problems.key(key, message))
        .ok()
}
