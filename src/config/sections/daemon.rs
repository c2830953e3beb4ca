//! The small sections about the process itself: `[templates]`, `[shutdown]`, `[planner]`, `[ui]`.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub dir: String,
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
