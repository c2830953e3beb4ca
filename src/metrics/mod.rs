//! Prometheus metrics: what workers and the planner count, what `/metrics` reads from PostgreSQL
//! and Redis at scrape time, and the text a scrape gets (OpenMetrics, which Prometheus reads).
//!
//! Each [`Metrics`] has a registry of its own (no global recorder), so every Herald built in one
//! process, as the tests do, counts apart. Counters count what was recorded in PostgreSQL, once
//! the row is written: a claim taken over mid-send counts nothing, as it records nothing.
//!
//! Series that can be named in advance (every kind, provider, schedule and error class) start at
//! zero, so a class of error is listed before it first happens and `rate()` sees its first one.
//! The README lists every metric.

mod live;

pub use live::*;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use strum::IntoEnumIterator;

use crate::{
    domain::ErrorClass,
    gate::{Gate, State},
    health::{Dependency as Dep, Health, Names, PartState},
    mail::Provider,
    store::{AttemptOutcome, AttemptRecord, Claimed, Next, Store},
};

/// How long a scrape waits for PostgreSQL, and for Redis, before leaving their gauges out.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a scrape answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SentLabels {
    kind: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    kind: String,
    provider: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    kind: String,
    provider: String,
    /// `sent` or an error class.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlannedLabels {
    schedule: String,
    /// `schedule` (the cron fire) or `manual` (`POST …/trigger`, `herald trigger`).
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkippedLabels {
    schedule: String,
    trigger: String,
    /// `nothing_to_say`, `opted_out`, `missed` or `already_planned`; `user_gone` for an email
    /// skipped at claim (trigger `claim`).
    reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn render_buckets() -> Histogram {
    // 0.5 ms to about 2 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 13))
}

fn send_buckets() -> Histogram {
    // 5 ms to about 40 s (a send times out well before).
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn lag_buckets() -> Histogram {
    // From a second to a day: a retry waits seconds, a quota pause hours.
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
    ])
}

fn plan_buckets() -> Histogram {
    // 10 ms to about 5 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// What one plan counted, as the metrics see it: the planner's report
/// (`schedule::PlanReport::counts`) without what only the API shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanCounts {
    pub schedule: String,
    pub dry_run: bool,
    pub planned: usize,
    pub already_planned: usize,
    pub skipped: usize,
    pub opted_out: usize,
    pub suppressed: usize,
    pub missed: usize,
    pub invalid_timezones: usize,
    /// Fires planned by the schedule; 0 for a manual plan.
    pub fires: usize,
    pub last_fire: Option<DateTime<Utc>>,
}

static DEAD_LETTERS: AtomicU64 = AtomicU64::new(0);

/// Counts one job that the queue's workers moved to the dead-letter list.
pub fn dead_lettered() {
    DEAD_LETTERS.fetch_add(1, Ordering::Relaxed);
}

/// Jobs this process moved to the dead-letter list since it started.
pub fn dead_letters() -> u64 {
    DEAD_LETTERS.load(Ordering::Relaxed)
}

/// The counters and histograms; cheap to clone, shared by the workers, the planner and HTTP.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    sent: Family<SentLabels, Counter>,
    failed: Family<ClassLabels, Counter>,
    retried: Family<ClassLabels, Counter>,
    deferred: Family<KindLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    render: Histograms<KindLabels>,
    send: Histograms<ProviderLabels>,
    lag: Histograms<KindLabels>,
    plan: Histograms<ScheduleLabels>,
    planned: Family<PlannedLabels, Counter>,
    skipped: Family<SkippedLabels, Counter>,
    fires: Family<ScheduleLabels, Counter>,
    invalid_timezones: Family<ScheduleLabels, Counter>,
    last_fire: Family<ScheduleLabels, Gauge>,
    webhook_events: Family<TypeLabels, Counter>,
    suppressed: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    /// Metrics with no series named in advance (tests that build parts by hand).
    fn default() -> Self {
        Metrics::new(&[], &[])
    }
}

/// Every error class of the taxonomy, as stored in `delivery_attempts.outcome`.
pub fn error_classes() -> impl Iterator<Item = &'static str> {
    ErrorClass::iter().map(ErrorClass::as_str)
}

impl Metrics {
    /// Registers every metric, with a zero series for each kind, provider, schedule and error
    /// class that can be named now.
    pub fn new(providers: &[&str], schedules: &[&str]) -> Metrics {
        let mut r = Registry::with_prefix("herald");
        let inner = Inner {
            sent: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            deferred: Family::default(),
            attempts: Family::default(),
            render: Family::new_with_constructor(render_buckets as fn() -> Histogram),
            send: Family::new_with_constructor(send_buckets as fn() -> Histogram),
            lag: Family::new_with_constructor(lag_buckets as fn() -> Histogram),
            plan: Family::new_with_constructor(plan_buckets as fn() -> Histogram),
            planned: Family::default(),
            skipped: Family::default(),
            fires: Family::default(),
            invalid_timezones: Family::default(),
            last_fire: Family::default(),
            webhook_events: Family::default(),
            suppressed: Family::default(),
            registry: Registry::default(),
        };
        r.register(
            "emails_sent",
            "Emails sent (recorded sent in PostgreSQL), by kind and the provider that sent them",
            inner.sent.clone(),
        );
        r.register(
            "emails_failed",
            "Emails recorded failed (into the failed set), by kind, last provider tried and the error class that failed them",
            inner.failed.clone(),
        );
        r.register(
            "emails_retried",
            "Emails put back for a retry that uses an attempt (a transient failure), by kind, provider and error class",
            inner.retried.clone(),
        );
        r.register(
            "emails_deferred",
            "Emails put back without using an attempt because providers asked to wait (rate limit, pause, circuit), by kind",
            inner.deferred.clone(),
        );
        r.register(
            "send_attempts",
            "Tries at a provider, as recorded in delivery_attempts, by kind, provider and outcome (sent or an error class)",
            inner.attempts.clone(),
        );
        r.register_with_unit(
            "render",
            "Time to render one email's templates, by kind",
            Unit::Seconds,
            inner.render.clone(),
        );
        r.register_with_unit(
            "send",
            "Time of one request to a provider (one email, or one batch), by provider",
            Unit::Seconds,
            inner.send.clone(),
        );
        r.register_with_unit(
            "delivery_lag",
            "From an email's due_at (that of the attempt that sent it) to its being recorded sent, by kind",
            Unit::Seconds,
            inner.lag.clone(),
        );
        r.register_with_unit(
            "plan",
            "Time to plan a schedule's fires (a planner round that had fires to plan, or a manual trigger)",
            Unit::Seconds,
            inner.plan.clone(),
        );
        r.register(
            "planned",
            "Deliveries planned (queued), by schedule and trigger (schedule or manual)",
            inner.planned.clone(),
        );
        r.register(
            "plan_skipped",
            "Users a plan queued nothing for, by schedule, trigger and reason (nothing_to_say, opted_out, suppressed, missed, already_planned; with trigger claim, an email skipped when claimed: user_gone when the app no longer has its user, opted_out when the user opted out of its kind after it was planned, suppressed when its address was suppressed since)",
            inner.skipped.clone(),
        );
        r.register(
            "schedule_fires",
            "Fires a schedule planned (one per fire instant and time zone)",
            inner.fires.clone(),
        );
        r.register(
            "invalid_timezones",
            "Invalid time zones seen while planning (users given the schedule's fallback zone), by schedule",
            inner.invalid_timezones.clone(),
        );
        r.register(
            "schedule_last_fire_timestamp_seconds",
            "The instant of the last fire this process planned, by schedule (absent until its first fire)",
            inner.last_fire.clone(),
        );
        r.register(
            "webhook_events",
            "Provider events received and verified (a replay counts once), by type (email.delivered, email.bounced, …)",
            inner.webhook_events.clone(),
        );
        r.register(
            "suppressions",
            "Addresses put on the suppression list, by reason (bounced, complained)",
            inner.suppressed.clone(),
        );
        for reason in ["bounced", "complained"] {
            let _ = inner.suppressed.get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            });
        }
        for kind in crate::kinds::Kind::all().map(|k| k.name().to_owned()) {
            let _ = inner
                .deferred
                .get_or_create_owned(&KindLabels { kind: kind.clone() });
            let _ = inner
                .render
                .get_or_create_owned(&KindLabels { kind: kind.clone() });
            let _ = inner
                .lag
                .get_or_create_owned(&KindLabels { kind: kind.clone() });
            for &provider in providers {
                let provider = provider.to_owned();
                let _ = inner.sent.get_or_create_owned(&SentLabels {
                    kind: kind.clone(),
                    provider: provider.clone(),
                });
                for outcome in AttemptOutcome::all() {
                    let _ = inner.attempts.get_or_create_owned(&AttemptLabels {
                        kind: kind.clone(),
                        provider: provider.clone(),
                        outcome: outcome.as_str().to_owned(),
                    });
                }
                for class in error_classes() {
                    let labels = ClassLabels {
                        kind: kind.clone(),
                        provider: provider.clone(),
                        class: class.to_owned(),
                    };
                    let _ = inner.failed.get_or_create_owned(&labels);
                    let _ = inner.retried.get_or_create_owned(&labels);
                }
            }
        }
        for &provider in providers {
            let _ = inner.send.get_or_create_owned(&ProviderLabels {
                provider: provider.to_owned(),
            });
        }
        for &schedule in schedules {
            let s = ScheduleLabels {
                schedule: schedule.to_owned(),
            };
            let _ = inner.plan.get_or_create_owned(&s);
            let _ = inner.fires.get_or_create_owned(&s);
            let _ = inner.invalid_timezones.get_or_create_owned(&s);
            let _ = inner.planned.get_or_create_owned(&PlannedLabels {
                schedule: schedule.to_owned(),
                trigger: "schedule".to_owned(),
            });
        }
        Metrics(Arc::new(Inner {
            registry: r,
            ..inner
        }))
    }

    /// One email rendered (or not: a failed render is timed too).
    pub fn rendered(&self, kind: &str, took: Duration) {
        self.0
            .render
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One request to a provider answered (or failed).
    pub fn requested(&self, provider: &str, took: Duration) {
        self.0
            .send
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A delivery's tries and where it went next, once recorded in PostgreSQL.
    pub fn recorded(&self, d: &Claimed, tries: &[AttemptRecord<'_>], next: &Next<'_>) {
        let m = &self.0;
        let kind = || d.kind.clone();
        for t in tries {
            m.attempts
                .get_or_create(&AttemptLabels {
                    kind: kind(),
                    provider: t.provider.to_owned(),
                    outcome: t.outcome.as_str().to_owned(),
                })
                .inc();
        }
        let last = tries.last();
        let class_labels = || ClassLabels {
            kind: kind(),
            provider: last.map_or("none", |t| t.provider).to_owned(),
            class: last.map_or("none", |t| t.outcome.as_str()).to_owned(),
        };
        match next {
            Next::Sent { provider, .. } => {
                m.sent
                    .get_or_create(&SentLabels {
                        kind: kind(),
                        provider: (*provider).to_owned(),
                    })
                    .inc();
                let lag = (Utc::now() - d.due_at).to_std().unwrap_or_default();
                m.lag
                    .get_or_create(&KindLabels { kind: kind() })
                    .observe(lag.as_secs_f64());
            }
            Next::Failed => {
                m.failed.get_or_create(&class_labels()).inc();
            }
            Next::Retry { counts: true, .. } => {
                m.retried.get_or_create(&class_labels()).inc();
            }
            Next::Retry { counts: false, .. } => {
                m.deferred.get_or_create(&KindLabels { kind: kind() }).inc();
            }
        }
    }

    /// A plan that was carried out (not a dry run): `trigger` is `schedule` or `manual`.
    /// An email of `kind` skipped at claim: the app no longer has its user.
    /// A verified provider event of `kind` (`email.bounced`, …).
    pub fn webhook_event(&self, kind: &str) {
        self.0
            .webhook_events
            .get_or_create(&TypeLabels {
                r#type: kind.to_owned(),
            })
            .inc();
    }

    /// An address newly suppressed, for `reason` (`bounced`, `complained`).
    pub fn suppressed(&self, reason: &str) {
        self.0
            .suppressed
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// An email skipped when claimed: `reason` is `user_gone`, `opted_out` or `suppressed`.
    pub fn skipped_at_claim(&self, kind: &str, reason: &str) {
        self.0
            .skipped
            .get_or_create(&SkippedLabels {
                schedule: kind.to_owned(),
                trigger: "claim".to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn planned(&self, trigger: &str, r: &PlanCounts, took: Duration) {
        if r.dry_run {
            return;
        }
        let m = &self.0;
        let schedule = || ScheduleLabels {
            schedule: r.schedule.clone(),
        };
        let manual = trigger == "manual";
        if !manual && r.fires == 0 {
            // A tick with no fire in it: nothing to count.
            return;
        }
        m.plan
            .get_or_create(&schedule())
            .observe(took.as_secs_f64());
        m.planned
            .get_or_create(&PlannedLabels {
                schedule: r.schedule.clone(),
                trigger: trigger.to_owned(),
            })
            .inc_by(r.planned as u64);
        for (reason, n) in [
            // `skipped` counts the users left out for every reason.
            (
                "nothing_to_say",
                r.skipped.saturating_sub(r.opted_out + r.suppressed),
            ),
            ("opted_out", r.opted_out),
            ("suppressed", r.suppressed),
            ("missed", r.missed),
            ("already_planned", r.already_planned),
        ] {
            m.skipped
                .get_or_create(&SkippedLabels {
                    schedule: r.schedule.clone(),
                    trigger: trigger.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc_by(n as u64);
        }
        m.invalid_timezones
            .get_or_create(&schedule())
            .inc_by(r.invalid_timezones as u64);
        if !manual {
            m.fires.get_or_create(&schedule()).inc_by(r.fires as u64);
            if let Some(at) = r.last_fire {
                m.last_fire.get_or_create(&schedule()).set(at.timestamp());
            }
        }
    }

    /// The whole exposition: the counters, then what `live` read at scrape time.
    pub fn encode(&self, live: &Live) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.0.registry);
        let _ = text::encode_registry(&mut out, &live.registry());
        let _ = text::encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_class_is_listed_before_it_happens() {
        let m = Metrics::new(&["smtp"], &["overdue_summary"]);
        let live = Live {
            names: Names::SERVERS,
            postgres: None,
            redis: None,
            parts: BTreeMap::new(),
        };
        let text = m.encode(&live);
        for class in error_classes() {
            assert!(
                text.contains(&format!(
                    "herald_emails_failed_total{{kind=\"overdue_summary\",provider=\"smtp\",class=\"{class}\"}} 0"
                )),
                "{class} is missing:\n{text}"
            );
        }
        assert!(
            text.contains("herald_up{dependency=\"postgres\"} 0"),
            "{text}"
        );
        assert!(!text.contains("herald_deliveries_failed"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
