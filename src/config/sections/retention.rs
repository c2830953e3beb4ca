//! `[retention]`: how long finished deliveries are kept, by status.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, duration};

/// How long finished deliveries (and their attempts) are kept, by status.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub sent: String,
    pub failed: String,
    pub skipped: String,
    pub payload: String,
}

/// How long a delivery in a final status is kept, counted from its last change (`updated_at`):
/// older ones are deleted with their attempts. Deleting a row frees its dedup key, so a trigger
/// may not reach back further than [`RetentionSettings::trigger_horizon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub sent: Duration,
    pub failed: Duration,
    pub skipped: Duration,
    /// How long a sent or skipped delivery keeps its payload (any duration; past `sent` or
    /// `skipped` the row is gone anyway).
    pub payload: Duration,
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
            payload: 3 * day,
        }
    }
}

/// Each value a duration of at least [`RetentionSettings::MIN`]; a bad one counts as its default,
/// so that the schedules' `catch_up` can still be checked against the others.
pub(super) fn check(raw: &RawRetention, p: &mut Problems) -> RetentionSettings {
    let defaults = RetentionSettings::default();
    let mut one = |key: &str, text: &str, default: Duration| match duration(key, text, p) {
        Some(d) if d >= RetentionSettings::MIN => d,
        Some(d) => {
            p.key(
                key,
                format!(
                    "is {}; keep deliveries at least {}: a deleted delivery frees its dedup key, and a manual trigger may reach back a day",
                    humantime::format_duration(d),
                    humantime::format_duration(RetentionSettings::MIN)
                ),
            );
            default
        }
        None => default,
    };
    RetentionSettings {
        sent: one("retention.sent", &raw.sent, defaults.sent),
        failed: one("retention.failed", &raw.failed, defaults.failed),
        skipped: one("retention.skipped", &raw.skipped, defaults.skipped),
        payload: duration("retention.payload", &raw.payload, p).unwrap_or(defaults.payload),
    }
}
