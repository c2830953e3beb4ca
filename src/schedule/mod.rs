//! Cron ticks (apalis-cron) and the planner that turns one tick into deliveries. It never sends.

pub mod compose;

use std::{collections::HashMap, sync::Arc};

use anyhow::Context;
use apalis_cron::CronScheduler;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::{
    config::ScheduleSettings,
    domain::{self, Kind},
    shutdown::Shutdown,
    store::{NewDelivery, Store},
};
use compose::{UserData, compose, open_window};

/// Users read and planned per round trip to PostgreSQL.
const USERS_PER_BATCH: i64 = 1000;

/// How to plan: as of which instant, for whom, and whether to write anything.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The tick's instant; "tomorrow" and the dedup key's date are computed from it.
    pub at: DateTime<Utc>,
    /// Plan for one user only.
    pub user_id: Option<i64>,
    /// Compute the emails and insert nothing.
    pub dry_run: bool,
}

/// What a tick planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanReport {
    pub schedule: String,
    pub at: DateTime<Utc>,
    pub dry_run: bool,
    /// New deliveries inserted (or, in a dry run, that would be).
    pub planned: usize,
    /// Deliveries whose dedup key existed already: this tick was planned before.
    pub already_planned: usize,
    /// Users with nothing to say or who opted out of this kind.
    pub skipped: usize,
    pub opted_out: usize,
    /// Users whose stored time zone is not a zone; they were planned in UTC.
    pub invalid_timezones: usize,
    pub delivery_ids: Vec<i64>,
    /// In a dry run: what would be sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Preview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub user_id: i64,
    pub recipient: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
}

/// The key that makes planning idempotent: schedule, user, and the tick's date in the schedule's
/// zone. The same tick planned twice, or by two processes, maps to the same key.
pub fn dedup_key(schedule: &ScheduleSettings, user_id: i64, at: DateTime<Utc>) -> String {
    format!(
        "{}:{}:{}",
        schedule.name,
        user_id,
        domain::local_date(schedule.timezone, at)
    )
}

/// Plans one tick: reads users in batches, composes each user's email and inserts the deliveries.
pub async fn plan(
    store: &Store,
    schedule: &ScheduleSettings,
    opts: &PlanOptions,
) -> anyhow::Result<PlanReport> {
    let kind = schedule.kind;
    let mut report = PlanReport {
        schedule: schedule.name.clone(),
        at: opts.at,
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let now = Utc::now();
    let mut after = 0;
    loop {
        let users = store
            .users_page(kind.name(), after, USERS_PER_BATCH, opts.user_id)
            .await
            .context("cannot read users")?;
        let Some(last) = users.last() else { break };
        after = last.id;

        let zones: Vec<_> = users
            .iter()
            .map(|u| {
                domain::parse_zone(&u.timezone).unwrap_or_else(|_| {
                    report.invalid_timezones += 1;
                    tracing::warn!(user_id = u.id, timezone = %u.timezone, "user has an invalid time zone; using UTC");
                    chrono_tz::UTC
                })
            })
            .collect();
        let wanted: Vec<i64> = users
            .iter()
            .filter(|u| !u.opted_out)
            .map(|u| u.id)
            .collect();
        report.opted_out += users.len() - wanted.len();

        // One query per table for the whole batch, over the union of every user's window;
        // each user's exact window is applied below, in Rust.
        let windows: Vec<_> = zones
            .iter()
            .map(|tz| open_window(kind, *tz, opts.at))
            .collect();
        let lo = windows.iter().map(|w| w.0).min().unwrap_or(opts.at);
        let hi = windows.iter().map(|w| w.1).max().unwrap_or(opts.at);
        let open = store
            .open_tasks_due(&wanted, lo, hi)
            .await
            .context("cannot read tasks")?;
        let (completed, focus) = if kind == Kind::WeeklyReport {
            let from = opts.at - chrono::Duration::days(8);
            (
                store
                    .tasks_completed(&wanted, from, opts.at)
                    .await
                    .context("cannot read completed tasks")?,
                store
                    .focus_sessions(&wanted, from, opts.at)
                    .await
                    .context("cannot read focus sessions")?,
            )
        } else {
            (Vec::new(), Vec::new())
        };

        let mut data: HashMap<i64, UserData<'_>> = HashMap::new();
        let index: HashMap<i64, usize> = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        for t in &open {
            let (start, end) = windows[index[&t.owner_id]];
            if t.due_at.is_some_and(|d| d >= start && d < end) {
                data.entry(t.owner_id).or_default().open.push(t);
            }
        }
        for t in &completed {
            let (start, end) = domain::week_before(zones[index[&t.owner_id]], opts.at);
            if t.completed_at.is_some_and(|c| c >= start && c < end) {
                data.entry(t.owner_id).or_default().completed.push(t);
            }
        }
        for f in &focus {
            let (start, end) = domain::week_before(zones[index[&f.owner_id]], opts.at);
            if f.started_at >= start && f.started_at < end {
                data.entry(f.owner_id).or_default().focus.push(f);
            }
        }

        let mut rows = Vec::new();
        for (user, tz) in users.iter().zip(&zones) {
            if user.opted_out {
                report.skipped += 1;
                continue;
            }
            let empty = UserData::default();
            let Some(payload) = compose(
                kind,
                user,
                *tz,
                opts.at,
                data.get(&user.id).unwrap_or(&empty),
            ) else {
                report.skipped += 1;
                continue;
            };
            rows.push(NewDelivery {
                kind: kind.name().to_owned(),
                user_id: user.id,
                dedup_key: dedup_key(schedule, user.id, opts.at),
                recipient: user.email.clone(),
                payload,
                planned_for: opts.at,
                due_at: now,
            });
        }

        if opts.dry_run {
            report.planned += rows.len();
            report.preview.extend(rows.into_iter().map(|r| Preview {
                user_id: r.user_id,
                recipient: r.recipient,
                dedup_key: r.dedup_key,
                payload: r.payload,
            }));
        } else {
            let ids = store
                .insert_deliveries(&rows)
                .await
                .context("cannot insert deliveries")?;
            report.planned += ids.len();
            report.already_planned += rows.len() - ids.len();
            report.delivery_ids.extend(ids);
        }
        if opts.user_id.is_some() {
            break;
        }
    }
    tracing::info!(
        schedule = %schedule.name, at = %opts.at, dry_run = opts.dry_run, planned = report.planned,
        already_planned = report.already_planned, skipped = report.skipped, "planned a tick"
    );
    Ok(report)
}

/// Runs one schedule's cron ticks until `shutdown` resolves. Each tick plans, then calls `planned`
/// (which wakes the dispatcher).
///
/// apalis-cron stores nothing and elects no leader: a tick missed while Herald was down is not
/// replayed, and two processes both fire. The dedup key makes the second firing insert nothing.
pub async fn run_schedule(
    store: Store,
    schedule: ScheduleSettings,
    planned: Arc<dyn Fn() + Send + Sync>,
    shutdown: Shutdown,
) {
    let ticks = CronScheduler::new(schedule.cron.clone())
        .with_timezone(schedule.timezone)
        .into_stream();
    let mut ticks = std::pin::pin!(ticks);
    tracing::info!(schedule = %schedule.name, cron = %schedule.cron_expr, timezone = %schedule.timezone, "schedule started");
    loop {
        let tick = tokio::select! {
            _ = shutdown.wait() => break,
            tick = ticks.next() => tick,
        };
        match tick {
            Some(Ok(tick)) => {
                let at = DateTime::from_timestamp(tick.get_timestamp() as i64, 0)
                    .unwrap_or_else(Utc::now);
                let opts = PlanOptions {
                    at,
                    user_id: None,
                    dry_run: false,
                };
                match plan(&store, &schedule, &opts).await {
                    Ok(_) => planned(),
                    Err(e) => {
                        tracing::error!(schedule = %schedule.name, at = %at, error = format!("{e:#}"), "planning a tick failed")
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(schedule = %schedule.name, error = %e, "cron stream error; waiting for the next tick")
            }
            None => break,
        }
    }
}
