//! What `/metrics` reads at scrape time ([`Live`]): the deliveries' and the queue's gauges from
//! PostgreSQL and Redis, each within [`SCRAPE_TIMEOUT`], and their exposition beside the counters.

use super::*;

/// `read`'s answer within [`SCRAPE_TIMEOUT`], or `None` (with the reason in the debug log).
pub(super) async fn within<T>(read: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
    match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::debug!(
                error = crate::telemetry::chain(&e),
                "a scrape left gauges out"
            );
            None
        }
        Err(_) => {
            tracing::debug!("a scrape left gauges out: no answer within 2 s");
            None
        }
    }
}

/// The `locale` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocaleLabels {
    locale: String,
}

/// What PostgreSQL said at scrape time.
#[derive(Debug, Clone)]
pub struct PostgresReading {
    pub deliveries: crate::store::DeliveryGauges,
    pub watermarks: Vec<(String, DateTime<Utc>)>,
    /// Sent emails, bounces and complaints over the last 24 hours and 7 days.
    pub rates: Vec<(&'static str, crate::store::Rates)>,
}

/// The windows of the bounce and complaint rates, as Gmail and Yahoo judge senders.
const RATE_WINDOWS: [(&str, i64); 2] = [("24h", 24), ("7d", 24 * 7)];

/// The `window` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    window: String,
}

/// What Redis said at scrape time.
#[derive(Debug, Clone)]
pub struct RedisReading {
    pub depth: usize,
    pub live_workers: usize,
    /// Each provider's name and state.
    pub providers: Vec<(&'static str, State)>,
}

/// What a scrape reads of the queue; `queue::Queue` is one. A trait, so that the metrics, which
/// the queue's workers count into, need not know the queue.
pub trait QueueReading: Sync {
    /// Jobs waiting.
    fn depth(&self) -> impl Future<Output = anyhow::Result<usize>> + Send;
    /// Workers that said they were alive within `within`.
    fn live_workers(&self, within: Duration) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// The gauges read at scrape time. A source that failed or did not answer within
/// [`SCRAPE_TIMEOUT`] is `None`: its gauges are left out and `herald_up` says 0.
#[derive(Debug, Clone)]
pub struct Live {
    /// What the two readings are called in this home (`herald_up`'s `dependency` label).
    pub names: Names,
    pub postgres: Option<PostgresReading>,
    pub redis: Option<RedisReading>,
    pub parts: BTreeMap<&'static str, PartState>,
}

impl Live {
    /// Reads PostgreSQL and Redis side by side, each within [`SCRAPE_TIMEOUT`].
    pub async fn read(
        store: &Store,
        queue: &impl QueueReading,
        gate: &Gate,
        providers: &[Provider],
        health: &Health,
        now: DateTime<Utc>,
    ) -> Live {
        let postgres = async {
            let deliveries = store.delivery_gauges(now).await?;
            let watermarks = store.watermarks().await?;
            let mut rates = Vec::with_capacity(RATE_WINDOWS.len());
            for (window, hours) in RATE_WINDOWS {
                let since = now - chrono::Duration::hours(hours);
                rates.push((window, store.suppression_rates(since).await?));
            }
            Ok::<_, anyhow::Error>(PostgresReading {
                deliveries,
                watermarks,
                rates,
            })
        };
        let redis = async {
            let depth = queue.depth().await?;
            let live_workers = queue.live_workers(Duration::from_secs(10)).await?;
            let mut states = Vec::with_capacity(providers.len());
            for p in providers {
                states.push((p.name(), gate.state(p).await?));
            }
            Ok::<_, anyhow::Error>(RedisReading {
                depth,
                live_workers,
                providers: states,
            })
        };
        let (postgres, redis) = tokio::join!(within(postgres), within(redis));
        Live {
            names: health.names(),
            postgres,
            redis,
            parts: health.parts(),
        }
    }

    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("herald");
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Dependency {
            dependency: String,
        }
        let up = Family::<Dependency, Gauge>::default();
        for (name, ok) in [
            (self.names.key(Dep::State), self.postgres.is_some()),
            (self.names.key(Dep::Queue), self.redis.is_some()),
        ] {
            up.get_or_create(&Dependency {
                dependency: name.to_owned(),
            })
            .set(i64::from(ok));
        }
        r.register(
            "up",
            "Whether this scrape could read the dependency (1) or not (0, and its gauges are absent)",
            up,
        );
        r.register(
            "jobs_dead_lettered",
            "Jobs this process moved to the queue's dead-letter list because their payload could not be decoded",
            prometheus_client::metrics::counter::ConstCounter::new(
                super::dead_letters(),
            ),
        );
        // Counted by the process since it started; a fresh registry every scrape, so the
        // total is set with one inc_by.
        let fallbacks = Family::<LocaleLabels, Counter>::default();
        for (locale, n) in crate::render::i18n::fallbacks() {
            fallbacks.get_or_create(&LocaleLabels { locale }).inc_by(n);
        }
        r.register(
            "translation_fallbacks",
            "Messages sent in the default locale's words because the user's locale lacks them (herald check lists the missing ones)",
            fallbacks,
        );
        let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            r.register(name, help, g);
        };
        if let Some(pg) = &self.postgres {
            let bounce =
                Family::<WindowLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            let complaint =
                Family::<WindowLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            for (window, r) in &pg.rates {
                let ratio = |n: i64| {
                    if r.sent == 0 {
                        0.0
                    } else {
                        n as f64 / r.sent as f64
                    }
                };
                let labels = WindowLabels {
                    window: (*window).to_owned(),
                };
                bounce.get_or_create(&labels).set(ratio(r.bounced));
                complaint.get_or_create(&labels).set(ratio(r.complained));
            }
            r.register(
                "bounce_rate",
                "Addresses suppressed for a hard bounce over the window, per email sent in it (providers review senders whose hard bounces climb past a few percent)",
                bounce,
            );
            r.register(
                "complaint_rate",
                "Addresses suppressed for a spam complaint over the window, per email sent in it (Gmail and Yahoo require under 0.3 %)",
                complaint,
            );
            let d = &pg.deliveries;
            gauge(
                &mut r,
                "deliveries_due",
                "Queued deliveries that are due and not yet pushed to Redis",
                d.due,
            );
            gauge(
                &mut r,
                "deliveries_waiting",
                "Queued deliveries due later: waiting for a retry, a provider, or their spread",
                d.waiting,
            );
            gauge(
                &mut r,
                "deliveries_dispatched",
                "Queued deliveries pushed to Redis and not yet claimed",
                d.dispatched,
            );
            gauge(
                &mut r,
                "deliveries_in_flight",
                "Deliveries being sent (claimed by a worker)",
                d.in_flight,
            );
            gauge(
                &mut r,
                "deliveries_failed",
                "The failed set: deliveries recorded failed and not retried or purged",
                d.failed,
            );
            let marks = Family::<ScheduleLabels, Gauge>::default();
            for (schedule, at) in &pg.watermarks {
                marks
                    .get_or_create(&ScheduleLabels {
                        schedule: schedule.clone(),
                    })
                    .set(at.timestamp());
            }
            r.register(
                "schedule_watermark_timestamp_seconds",
                "The instant up to which each schedule has planned (moves on every planner tick)",
                marks,
            );
        }
        if let Some(redis) = &self.redis {
            gauge(
                &mut r,
                "queue_depth",
                "Jobs waiting in the Redis queue",
                redis.depth as i64,
            );
            gauge(
                &mut r,
                "live_workers",
                "Worker sets with a heartbeat in the last 10 s, across every Herald process",
                redis.live_workers as i64,
            );
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            struct ProviderState {
                provider: String,
                state: String,
            }
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            struct ProviderPause {
                provider: String,
                class: String,
            }
            let states = Family::<ProviderState, Gauge>::default();
            let paused = Family::<ProviderPause, Gauge>::default();
            let remaining =
                Family::<ProviderLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            for (provider, state) in &redis.providers {
                let now = match state {
                    State::Ok => "ok",
                    State::Paused { .. } => "paused",
                    State::Circuit => "circuit_open",
                };
                for s in ["ok", "paused", "circuit_open"] {
                    states
                        .get_or_create(&ProviderState {
                            provider: (*provider).to_owned(),
                            state: s.to_owned(),
                        })
                        .set(i64::from(s == now));
                }
                let (class, left) = match state {
                    State::Paused {
                        class, remaining, ..
                    } => (class.as_str(), remaining.as_secs_f64()),
                    _ => ("", 0.0),
                };
                for c in error_classes() {
                    paused
                        .get_or_create(&ProviderPause {
                            provider: (*provider).to_owned(),
                            class: c.to_owned(),
                        })
                        .set(i64::from(c == class));
                }
                remaining
                    .get_or_create(&ProviderLabels {
                        provider: (*provider).to_owned(),
                    })
                    .set(left);
            }
            r.register(
                "provider_state",
                "Each provider's shared state, one of ok, paused, circuit_open (1 for the current one)",
                states,
            );
            r.register(
                "provider_paused",
                "Whether a provider is paused after an error of this class (1) or not (0)",
                paused,
            );
            r.register_with_unit(
                "provider_pause_remaining",
                "How long a provider's pause lasts still (0 when not paused)",
                Unit::Seconds,
                remaining,
            );
        }
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Part {
            part: String,
        }
        let parts = Family::<Part, Gauge>::default();
        for (part, state) in &self.parts {
            parts
                .get_or_create(&Part {
                    part: (*part).to_owned(),
                })
                .set(i64::from(*state == PartState::Running));
        }
        r.register(
            "part_running",
            "Whether each background part (planner, dispatcher, workers, …) runs (1) or is being restarted (0)",
            parts,
        );
        r
    }
}
