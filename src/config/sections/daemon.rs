//! The small sections about the process itself: `[templates]`, `[app]`, `[shutdown]`,
//! `[planner]`, `[ui]`.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub dir: String,
    /// The locale of users whose own has no messages (`templates/messages/<locale>.ftl`).
    pub default_locale: String,
}

/// `[app]`: where the emails' buttons and preferences links go in the host app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub url: String,
    pub preferences_path: String,
}

/// The host app's address, as the emails link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// `app.url`, without a trailing slash.
    pub url: String,
    /// `app.preferences_path`: where a user sets which emails they get, from `/`.
    pub preferences_path: String,
}

/// `[app]`: `None` when `app.url` is empty (emails then have no button).
pub(super) fn app(a: &RawApp, p: &mut Problems) -> Option<AppSettings> {
    let url = a.url.trim().trim_end_matches('/');
    if !a.preferences_path.starts_with('/') {
        p.key(
            "app.preferences_path",
            format!(
                "is {:?}; write a path from the app's root, such as \"/settings/notifications\"",
                a.preferences_path
            ),
        );
    }
    if url.is_empty() {
        return None;
    }
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
        Ok(u) => p.key(
            "app.url",
            format!("is {url:?}, whose scheme is {:?}; write the app's https:// address, e.g. \"https://app.example.com\" (HERALD_APP_URL)", u.scheme()),
        ),
        Err(e) => p.key(
            "app.url",
            format!("{url:?} is not a URL ({e}); write it like \"https://app.example.com\" (HERALD_APP_URL)"),
        ),
    }
    Some(AppSettings {
        url: url.to_owned(),
        preferences_path: a.preferences_path.clone(),
    })
}

/// `templates.default_locale`: a BCP 47 tag (that it has messages is checked when the
/// templates load).
pub(super) fn default_locale(t: &RawTemplates, p: &mut Problems) -> String {
    let tag = t.default_locale.trim();
    if tag.parse::<unic_langid::LanguageIdentifier>().is_err() || tag.is_empty() {
        p.key(
            "templates.default_locale",
            format!("{tag:?} is not a BCP 47 language tag; write one such as \"en\" or \"fr\", with a messages file of that name in templates/messages/"),
        );
    }
    tag.to_owned()
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

/// `[ui]`: the dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    pub retry_per_second: u32,
}

/// How long in-flight sends may take to finish after SIGTERM: more than zero.
pub(super) fn shutdown_grace(s: &RawShutdown, p: &mut Problems) -> Duration {
    let grace = duration("shutdown.grace", &s.grace, p);
    if grace == Some(Duration::ZERO) {
        p.key(
            "shutdown.grace",
            "is 0s; on SIGTERM the sends in flight would be cut off and go out again once their lease runs out. Use something like \"25s\", a little less than the time your supervisor waits before it kills (docker's stop_grace_period)",
        );
    }
    grace.unwrap_or_default()
}

/// When the planner wakes up: a cron expression.
pub(super) fn planner_tick(s: &RawPlanner, p: &mut Problems) -> cron::Schedule {
    crate::domain::parse_cron(&s.tick).unwrap_or_else(|m| {
        p.key("planner.tick", m);
        crate::domain::parse_cron("*/5 * * * * *").expect("a valid fallback")
    })
}

/// How many failed deliveries a dashboard retry releases per second: at least 1.
pub(super) fn ui_retry_per_second(s: &RawUi, p: &mut Problems) -> u32 {
    if s.retry_per_second == 0 {
        p.key(
            "ui.retry_per_second",
            "is 0; a retry would never be released. Use something like 50 (a bulk retry queues that many per second)",
        );
    }
    s.retry_per_second
}
