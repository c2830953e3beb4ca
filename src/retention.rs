//! The retention task: about once a minute, deletes finished deliveries older than `retention.*`
//! and removes the payloads of sent and skipped ones older than `retention.payload`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    clock::Clock,
    config::RetentionSettings,
    shutdown::Shutdown,
    store::{Cutoffs, Store},
};

/// Time between two passes.
pub const EVERY: Duration = Duration::from_secs(60);

/// Deliveries deleted per statement: each statement is its own short transaction.
pub const BATCH: i64 = 1000;

/// The instants before which finished deliveries are expired, at `now`.
pub fn cutoffs(settings: &RetentionSettings, now: DateTime<Utc>) -> Cutoffs {
    // A retention of centuries keeps everything: the cutoff is the start of time.
    let before = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    Cutoffs {
        sent: before(settings.sent),
        failed: before(settings.failed),
        skipped: before(settings.skipped),
        payload: before(settings.payload),
    }
}

/// Runs a pass at start and then every [`EVERY`] until `shutdown`. A failed pass is logged and
/// tried again on the next one.
pub async fn run(store: Store, settings: RetentionSettings, clock: Clock, shutdown: Shutdown) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = every.tick() => {}
        }
        let before = cutoffs(&settings, clock.now());
        let pass = tokio::select! {
            _ = shutdown.wait() => break,
            pass = store.delete_expired(&before, BATCH) => pass,
        };
        match pass {
            Ok(d) if d.total() > 0 => tracing::info!(
                sent = d.sent,
                failed = d.failed,
                skipped = d.skipped,
                events = d.events,
                payloads = d.payloads,
                "retention: deleted old deliveries and their attempts and old provider events, and removed the payloads of emails sent or skipped a while ago"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "retention pass failed; will retry on the next one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_expires_after_its_own_retention() {
        let now = DateTime::parse_from_rfc3339("2026-12-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = cutoffs(&RetentionSettings::default(), now);
        assert_eq!(c.sent.to_rfc3339(), "2026-12-01T12:00:00+00:00");
        assert_eq!(c.failed.to_rfc3339(), "2026-10-02T12:00:00+00:00");
        assert_eq!(c.skipped, c.sent);
        let forever = RetentionSettings {
            sent: Duration::from_secs(u64::MAX / 2),
            ..RetentionSettings::default()
        };
        assert_eq!(cutoffs(&forever, now).sent, DateTime::<Utc>::MIN_UTC);
    }
}
