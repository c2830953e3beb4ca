//! The planner's loop: plan every enabled schedule on each tick (an apalis-cron stream) or
//! nudge, until shutdown.

use std::sync::Arc;

use apalis_cron::CronScheduler;
use tokio::sync::Notify;

use super::*;

/// Wakes the planner between its ticks (tests, and `POST …/trigger` does not need it).
#[derive(Debug, Clone, Default)]
pub struct Planner {
    wake: Arc<Notify>,
    metrics: crate::metrics::Metrics,
}

impl Planner {
    /// A planner that counts its fires in `metrics`.
    pub fn new(metrics: crate::metrics::Metrics) -> Planner {
        Planner {
            wake: Arc::default(),
            metrics,
        }
    }

    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Plans every enabled schedule on each planner tick (an apalis-cron stream) or nudge,
    /// until `shutdown`. `planned` is called after a round that queued something. PostgreSQL
    /// failures go to `health`, which logs an outage once.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        self,
        store: Store,
        schedules: Vec<ScheduleSettings>,
        tick: cron::Schedule,
        clock: Clock,
        planned: Arc<dyn Fn() + Send + Sync>,
        health: Health,
        shutdown: Shutdown,
    ) {
        let ticks = |every: &cron::Schedule| CronScheduler::new(every.clone()).into_stream();
        let mut stream = Box::pin(ticks(&tick));
        let mut behind = false;
        let mut paused = std::collections::HashSet::new();
        loop {
            for schedule in schedules.iter().filter(|s| s.enabled) {
                let started = std::time::Instant::now();
                match plan_due(&store, schedule, clock.now()).await {
                    Ok(r) => {
                        health.up(Dependency::State);
                        if let Some(r) = &r {
                            say_pause(&mut paused, r);
                        }
                        if let Some(r) = &r {
                            self.metrics
                                .planned("schedule", &r.counts(), started.elapsed());
                        }
                        if r.is_some_and(|r| r.planned > 0) {
                            planned();
                        }
                    }
                    Err(e) if is_state_error(&e) => {
                        tracing::debug!(schedule = %schedule.name, error = crate::telemetry::chain(&e), "planning failed; will retry on the next tick");
                        health.down(Dependency::State, crate::telemetry::chain(&e));
                    }
                    Err(e) => {
                        tracing::error!(schedule = %schedule.name, error = crate::telemetry::chain(&e), "planning failed; will retry on the next tick")
                    }
                }
            }
            // Wait for the next tick or a nudge.
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = self.wake.notified() => break,
                    next = stream.next() => match next {
                        Some(Ok(_)) => {
                            behind = false;
                            break;
                        }
                        Some(Err(e)) => {
                            // apalis-cron 1.0 keeps failing on a tick that has passed (`cron tick
                            // is out of range`) instead of moving on, so a round that outlasted
                            // the tick interval would spin on it forever. A new stream waits for
                            // the next tick from now: missed ticks are skipped (the watermark
                            // makes sure no fire is), with one line until the planner catches up.
                            if !behind {
                                tracing::info!(error = %e, "the planner fell behind its tick; skipping to the next one");
                            }
                            behind = true;
                            stream = Box::pin(ticks(&tick));
                        }
                        None => return,
                    },
                }
            }
        }
    }
}

/// One line when the planner first finds a schedule paused, and one when it plans it again:
/// not one per tick. `paused` holds the schedules this planner last found paused.
fn say_pause(paused: &mut std::collections::HashSet<String>, r: &PlanReport) {
    match r.paused {
        Some(since) if paused.insert(r.schedule.clone()) => tracing::info!(
            schedule = %r.schedule, paused_at = %since,
            "schedule is paused: the planner skips its fires until it is resumed (they are not sent late)"
        ),
        None if paused.remove(&r.schedule) => {
            tracing::info!(schedule = %r.schedule, "schedule resumed: planning its fires from now on")
        }
        _ => {}
    }
}
