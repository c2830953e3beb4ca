//! The planner: turns a schedule's fires into deliveries, each in the recipient's own time. It
//! never sends.
//!
//! # How a schedule fires
//!
//! PostgreSQL keeps a watermark per schedule: the instant up to which it has planned. On every
//! planner tick (apalis-cron, every 5 s by default) each schedule takes its advisory lock, lists
//! the fires in `(watermark, now]` for every zone its users live in ([`occurrences::between`]),
//! plans those users, and moves the watermark to `now` in the same transaction.
//!
//! Why not one apalis-cron scheduler per schedule: apalis-cron stores nothing (a tick missed
//! while Herald was down is gone), fires on every process, follows one zone per scheduler, and
//! inherits cron's DST behaviour (a time in a spring-forward gap never fires; one in a fall-back
//! overlap fires twice). The watermark gives catch-up after downtime, the advisory lock plans
//! each fire once across any number of processes, and the dedup key stays as the last guard.
//!
//! Why a PostgreSQL advisory lock and not a Redis lease: the lock lives in the same transaction
//! that advances the watermark, so "planned" and "watermark moved" commit together, and a
//! process that dies mid-plan drops its connection and with it the lock: the next tick of any
//! process plans again, with no lease time to tune and no fencing token to check.

mod items;
mod manual;
mod next;
pub mod occurrences;
mod planner;

pub use manual::*;
pub use next::{next_fires, user_zones};
pub use planner::Planner;

use std::{collections::HashMap, fmt};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::{
    clock::Clock,
    config::{RetentionSettings, ScheduleSettings, ZoneMode},
    domain,
    health::{Dependency, Health, is_state_error},
    kinds::{Kind, Recipient},
    metrics::PlanCounts,
    shutdown::Shutdown,
    source::{UserFilter, UserRow},
    store::{DeliveryStatus, NewDelivery, Store},
};

/// How late a fire may be planned and still count as on time: the planner's own lag.
const ON_TIME: chrono::Duration = chrono::Duration::minutes(1);

/// What a plan did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PlanReport {
    pub schedule: String,
    pub at: DateTime<Utc>,
    pub dry_run: bool,
    /// New deliveries inserted (or, in a dry run, that would be).
    pub planned: usize,
    /// Deliveries whose dedup key existed already: this fire was planned before.
    pub already_planned: usize,
    /// Users with nothing to say or who opted out of this kind.
    pub skipped: usize,
    pub opted_out: usize,
    /// Users whose address is on the suppression list (a hard bounce, a complaint); counted in
    /// `skipped` too.
    pub suppressed: usize,
    /// Fires missed by more than the catch-up window: recorded as skipped deliveries, not sent.
    pub missed: usize,
    /// Users whose stored time zone is not a zone; they got the schedule's fallback zone.
    pub invalid_timezones: usize,
    /// Fires planned by the schedule (one per instant and zone); 0 for a manual plan. For the
    /// metrics, not the API.
    #[serde(skip)]
    pub fires: usize,
    /// The latest of those fires.
    #[serde(skip)]
    pub last_fire: Option<DateTime<Utc>>,
    /// The schedule is paused (since then): the planner passed over this round. For the
    /// planner's log, not the API.
    #[serde(skip)]
    pub paused: Option<DateTime<Utc>>,
    /// The new deliveries' ids, when asked for or for one user; `None` otherwise (a tick for
    /// 25,000 users answers with counts, not 25,000 ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_ids: Option<Vec<i64>>,
    /// In a dry run: what would be sent, the first [`PREVIEW_LIMIT`] emails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Preview>,
    /// In a dry run: the emails that would be sent and are not in `preview` (past its
    /// [`PREVIEW_LIMIT`]); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_left_out: Option<usize>,
}

impl PlanReport {
    /// What the metrics count of this report.
    pub fn counts(&self) -> PlanCounts {
        PlanCounts {
            schedule: self.schedule.clone(),
            dry_run: self.dry_run,
            planned: self.planned,
            already_planned: self.already_planned,
            skipped: self.skipped,
            opted_out: self.opted_out,
            suppressed: self.suppressed,
            missed: self.missed,
            invalid_timezones: self.invalid_timezones,
            fires: self.fires,
            last_fire: self.last_fire,
        }
    }

    /// Counts in one page of users (see [`plan_page`]); its ids when this report lists them.
    fn add_page(&mut self, page: PlanReport) {
        self.planned += page.planned;
        self.already_planned += page.already_planned;
        self.skipped += page.skipped;
        self.opted_out += page.opted_out;
        self.suppressed += page.suppressed;
        self.missed += page.missed;
        self.invalid_timezones += page.invalid_timezones;
        if let (Some(list), Some(ids)) = (&mut self.delivery_ids, page.delivery_ids) {
            list.extend(ids);
        }
        if let Some(left_out) = page.preview_left_out {
            self.add_previews(page.preview);
            *self.preview_left_out.get_or_insert(0) += left_out;
        }
    }

    /// Keeps the previews up to [`PREVIEW_LIMIT`] and counts the rest in `preview_left_out`.
    fn add_previews(&mut self, previews: impl IntoIterator<Item = Preview>) {
        let left_out = self.preview_left_out.get_or_insert(0);
        for p in previews {
            if self.preview.len() < PREVIEW_LIMIT {
                self.preview.push(p);
            } else {
                *left_out += 1;
            }
        }
    }
}

/// How many emails a dry run shows (`preview`): enough to read, and a dry run of 100,000 users
/// still answers in a few kilobytes; `preview_left_out` counts the others.
pub const PREVIEW_LIMIT: usize = 100;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub user_id: String,
    pub recipient: String,
    pub dedup_key: String,
    pub due_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

/// The key that makes planning idempotent: schedule, user, and the kind's key for the email
/// (by default the local date it is for: `weekly_report:42:2026-11-22`).
pub fn dedup_key(schedule: &str, user_id: &str, key: impl fmt::Display) -> String {
    format!("{schedule}:{user_id}:{key}")
}

/// One batch of planning: which users, at which instant, keyed on which date.
struct Batch<'a> {
    schedule: &'a ScheduleSettings,
    /// The fire instant: "tomorrow", "overdue" and "this week" are computed from it.
    at: DateTime<Utc>,
    /// When the emails are due (before each user's spread offset).
    due: DateTime<Utc>,
    /// The dedup key's date: fixed for a fire, or each user's local date at `at` when `None`.
    key_date: Option<NaiveDate>,
    only_user: Option<&'a str>,
    /// Only users whose stored zone string is one of these.
    zones: Option<&'a [String]>,
    dry_run: bool,
    /// `Some(reason)`: record the emails as skipped instead of queueing them.
    missed: Option<String>,
    /// Planned by hand: keyed with [`manual_dedup_key`].
    manual: bool,
}

impl Batch<'_> {
    /// The dedup key of this batch's email to `user_id` whose kind keyed it `key` (the local
    /// date, unless the kind says otherwise).
    fn dedup_key(&self, user_id: &str, key: &str) -> String {
        planned_key(self.manual, &self.schedule.name, user_id, key)
    }
}

/// The dedup key of an email planned by the schedule, or by hand ([`manual_dedup_key`]).
fn planned_key(manual: bool, schedule: &str, user_id: &str, key: &str) -> String {
    if manual {
        manual_dedup_key(schedule, user_id, key)
    } else {
        dedup_key(schedule, user_id, key)
    }
}

/// Plans every fire of `schedule` between its watermark and `now`, if no other process is
/// planning it. Returns `None` when another process holds the lock.
pub async fn plan_due(
    store: &Store,
    schedule: &ScheduleSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PlanReport>> {
    let Some(lock) = store
        .try_lock_schedule(&schedule.name)
        .await
        .context("cannot take the schedule lock")?
    else {
        return Ok(None);
    };
    let mut report = PlanReport {
        schedule: schedule.name.clone(),
        at: now,
        ..Default::default()
    };
    let Some(since) = store
        .watermark(&schedule.name)
        .await
        .context("cannot read the watermark")?
    else {
        // First start: nothing before now was promised.
        store.advance_watermark(lock, &schedule.name, now).await?;
        tracing::info!(schedule = %schedule.name, from = %now, "schedule starts planning");
        return Ok(Some(report));
    };
    if now <= since {
        return Ok(Some(report));
    }
    if let Some(pause) = store
        .schedule_pause(&schedule.name)
        .await
        .context("cannot read whether the schedule is paused")?
    {
        // Paused: the fires of the pause are passed over, never sent late after it.
        store
            .advance_watermark(lock, &schedule.name, now)
            .await
            .context("cannot move the watermark")?;
        report.paused = Some(pause.paused_at);
        return Ok(Some(report));
    }
    match (&schedule.cron, schedule.relative) {
        (Some(cron), _) => plan_fires(store, schedule, cron, since, now, &mut report).await?,
        (None, Some(when)) => {
            items::plan_items_due(store, schedule, when, since, now, &mut report).await?
        }
        (None, None) => anyhow::bail!(
            "schedule {} has neither a cron nor an item time",
            schedule.name
        ),
    }
    store
        .advance_watermark(lock, &schedule.name, now)
        .await
        .context("cannot move the watermark")?;
    if report.fires > 0 {
        log_report(&report);
    }
    if report.invalid_timezones > 0 {
        tracing::warn!(schedule = %schedule.name, users = report.invalid_timezones, fallback = %schedule.fallback_timezone.name(), "users have an invalid time zone; they got the fallback zone");
    }
    Ok(Some(report))
}

/// How late a planned instant is, and the reason it is recorded as missed when that is more
/// than the catch-up window allows (see [`ScheduleSettings::catch_up`]).
fn missed(
    schedule: &ScheduleSettings,
    at: DateTime<Utc>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<String> {
    let late = now - at;
    let window = chrono::Duration::from_std(schedule.catch_up).unwrap_or(ON_TIME);
    (late > ON_TIME.max(window)).then(|| {
        format!(
            "missed: Herald was not planning at {} ({}); {} late is outside the catch-up window of {}",
            at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            tz.name(),
            humantime::format_duration(late.to_std().unwrap_or_default()),
            humantime::format_duration(schedule.catch_up)
        )
    })
}

/// Plans every fire of a schedule at a wall-clock time in `(since, now]`, in every zone.
async fn plan_fires(
    store: &Store,
    schedule: &ScheduleSettings,
    cron: &cron::Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut PlanReport,
) -> anyhow::Result<()> {
    for (tz, names) in zones(store, schedule, cron, since, now).await? {
        for fire in occurrences::between(cron, tz, since, now) {
            let missed = missed(schedule, fire.at, tz, now);
            if let Some(reason) = &missed {
                tracing::warn!(schedule = %schedule.name, zone = tz.name(), fire = %fire.at, "{reason}");
            }
            let batch = Batch {
                schedule,
                at: fire.at,
                due: fire.at,
                key_date: Some(fire.local_date),
                only_user: None,
                zones: names.as_deref(),
                dry_run: false,
                missed,
                manual: false,
            };
            plan_users(store, &batch, report).await?;
            report.fires += 1;
            report.last_fire = report.last_fire.max(Some(fire.at));
        }
    }
    Ok(())
}

/// The zones a schedule fires in, each with the stored zone strings of its users (`None`: all).
/// Users with an invalid zone string are grouped under the schedule's fallback zone. The users'
/// zones are read from the source only when some zone could fire in `(since, now]`
/// ([`occurrences::any_zone_may_fire`]): most ticks have no fire anywhere, and an app's users
/// table has no index on its zone column.
async fn zones(
    store: &Store,
    schedule: &ScheduleSettings,
    cron: &cron::Schedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(Tz, Option<Vec<String>>)>> {
    match schedule.zone {
        ZoneMode::Fixed(tz) => Ok(vec![(tz, None)]),
        ZoneMode::Recipient if !occurrences::any_zone_may_fire(cron, since, now) => Ok(Vec::new()),
        ZoneMode::Recipient => {
            let mut groups: HashMap<Tz, Vec<String>> = HashMap::new();
            for name in store
                .source
                .time_zones()
                .await
                .context("cannot read the users' time zones from herald_users")?
            {
                // Counted per user, and logged once per fire, when the users are planned (this
                // runs on every tick).
                let tz = match name.as_str() {
                    "" => schedule.fallback_timezone,
                    name => domain::parse_zone(name).unwrap_or(schedule.fallback_timezone),
                };
                groups.entry(tz).or_default().push(name);
            }
            Ok(groups
                .into_iter()
                .map(|(tz, names)| (tz, Some(names)))
                .collect())
        }
    }
}

/// Reads users page by page, composes each user's email, and inserts (or previews) the
/// deliveries, [`Store::pages_in_flight`] pages at a time. Pages are counted into `report` in
/// order.
async fn plan_users(store: &Store, b: &Batch<'_>, report: &mut PlanReport) -> anyhow::Result<()> {
    let filter = UserFilter {
        only: b.only_user.map(str::to_owned),
        zones: b.zones.map(<[String]>::to_vec),
    };
    let pages = futures::stream::unfold(store.source.user_pages(filter), |mut rx| async move {
        rx.recv().await.map(|page| (page, rx))
    });
    // Boxed, so that the compiler checks `Send` here, where the lifetimes are known.
    let mut planned = pages
        .map_ok(|users| plan_page(store, b, users))
        .try_buffered(store.pages_in_flight())
        .boxed();
    while let Some(page) = planned.try_next().await? {
        report.add_page(page);
    }
    Ok(())
}

/// Composes one page of users' emails and inserts (or previews) them; counts them in a report
/// of their own, with the new deliveries' ids.
async fn plan_page(
    store: &Store,
    b: &Batch<'_>,
    users: Vec<UserRow>,
) -> anyhow::Result<PlanReport> {
    let mut page = PlanReport::default();
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let opted_out = store
        .opted_out_among(&b.schedule.name, &ids)
        .await
        .context("cannot read the opt-outs")?;
    let emails: Vec<String> = users.iter().map(|u| u.email.clone()).collect();
    let suppressed = store
        .suppressed_among(&emails)
        .await
        .context("cannot read the suppression list")?;
    let left_out = Left {
        opted_out: &opted_out,
        suppressed: &suppressed,
    };
    let zones: Vec<Tz> = users
        .iter()
        .map(|u| user_zone(b.schedule, u, &mut page))
        .collect();
    let rows = compose_batch(store, b, &users, &zones, &left_out, &mut page).await?;
    settle(store, rows, b.dry_run, b.missed.is_some(), &mut page).await?;
    Ok(page)
}

/// Inserts planned deliveries (or, in a dry run, previews them) and counts them in `page`:
/// `missed` rows are recorded as missed, not planned; a row whose key exists is counted as
/// already planned.
async fn settle(
    store: &Store,
    rows: Vec<NewDelivery>,
    dry_run: bool,
    missed: bool,
    page: &mut PlanReport,
) -> anyhow::Result<()> {
    if dry_run {
        // Predict the real answer: a key that exists would be counted as already planned.
        let keys: Vec<String> = rows.iter().map(|r| r.dedup_key.clone()).collect();
        let existing = store
            .existing_keys(&keys)
            .await
            .context("cannot read which deliveries exist")?;
        let (old, new): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| existing.contains(&r.dedup_key));
        page.already_planned += old.len();
        if missed {
            page.missed += new.len();
            page.preview_left_out.get_or_insert(0);
            return Ok(());
        }
        page.planned += new.len();
        // Only the emails the preview shows are read back; the others are counted.
        let shown = new
            .len()
            .min(PREVIEW_LIMIT.saturating_sub(page.preview.len()));
        *page.preview_left_out.get_or_insert(0) += new.len() - shown;
        page.add_previews(new.into_iter().take(shown).map(|r| {
            Preview {
                user_id: r.user_id,
                recipient: r.recipient,
                dedup_key: r.dedup_key,
                due_at: r.due_at,
                payload: serde_json::from_str(&r.payload)
                    .expect("the planner serialized this payload itself"),
            }
        }));
        return Ok(());
    }
    let ids = store
        .insert_deliveries(&rows)
        .await
        .context("cannot insert deliveries")?;
    page.already_planned += rows.len() - ids.len();
    if missed {
        page.missed += ids.len();
    } else {
        page.planned += ids.len();
        page.delivery_ids.get_or_insert_with(Vec::new).extend(ids);
    }
    Ok(())
}

/// A user's zone: their own, or the schedule's fallback when they have none or theirs is not a
/// zone (only the latter is counted).
fn user_zone(schedule: &ScheduleSettings, user: &UserRow, report: &mut PlanReport) -> Tz {
    let name = user.time_zone.as_deref().unwrap_or_default();
    if name.is_empty() {
        return schedule.fallback_timezone;
    }
    domain::parse_zone(name).unwrap_or_else(|_| {
        if schedule.zone == ZoneMode::Recipient {
            report.invalid_timezones += 1;
        }
        schedule.fallback_timezone
    })
}

/// The users of a page who get nothing whatever the kind says.
pub(super) struct Left<'a> {
    /// Opted out of the kind, by user id.
    pub opted_out: &'a std::collections::HashSet<String>,
    /// Suppressed addresses, lowercased.
    pub suppressed: &'a std::collections::HashSet<String>,
}

impl Left<'_> {
    /// Why `user` gets nothing, if they do not: counted in `report`.
    pub(super) fn count(&self, user: &UserRow, report: &mut PlanReport) -> bool {
        if self.opted_out.contains(&user.id) {
            report.opted_out += 1;
            true
        } else if !self.suppressed.is_empty()
            && self.suppressed.contains(&user.email.to_lowercase())
        {
            report.suppressed += 1;
            true
        } else {
            false
        }
    }
}

/// Asks the schedule's kind to load the batch's data and compose each user's email.
async fn compose_batch(
    store: &Store,
    b: &Batch<'_>,
    users: &[UserRow],
    zones: &[Tz],
    left: &Left<'_>,
    report: &mut PlanReport,
) -> anyhow::Result<Vec<NewDelivery>> {
    let kind = Kind::of(b.schedule);
    let mut wanted: Vec<Recipient> = Vec::with_capacity(users.len());
    for (u, tz) in users.iter().zip(zones) {
        if !left.count(u, report) {
            wanted.push(Recipient::of(u, *tz));
        }
    }
    let date = |i: usize| {
        b.key_date
            .unwrap_or_else(|| domain::local_date(wanted[i].tz, b.at))
    };
    let emails = kind
        .compose_all(&store.source, &wanted, b.at, &date)
        .await
        .with_context(|| format!("cannot compose the {kind} emails"))?;

    // Users who opted out were not asked; the others may have nothing to say.
    let mut heard = vec![false; wanted.len()];
    let mut rows = Vec::with_capacity(emails.len());
    for (i, key, payload) in emails {
        heard[i] = true;
        let user = &wanted[i];
        rows.push(NewDelivery {
            status: if b.missed.is_some() {
                DeliveryStatus::Skipped
            } else {
                DeliveryStatus::Queued
            },
            note: b.missed.clone(),
            kind: kind.name().to_owned(),
            dedup_key: b.dedup_key(&user.id, &key),
            user_id: user.id.clone(),
            recipient: user.user.email.clone(),
            payload: payload.into_json(),
            planned_for: b.at,
            due_at: b.due + occurrences::spread_offset(&user.id, b.schedule.spread),
        });
    }
    report.skipped += users.len() - wanted.len() + heard.iter().filter(|h| !**h).count();
    Ok(rows)
}

/// One line per plan: a manual one, or a planner round with fires in it (even if every user was
/// skipped). The API's `skipped` is logged as `nothing_to_say`: `missed` is what the dashboard
/// and the deliveries call skipped.
fn log_report(r: &PlanReport) {
    let fire = r.last_fire.map(|t| t.to_rfc3339()).unwrap_or_default();
    tracing::info!(
        schedule = %r.schedule, at = %r.at, fires = r.fires, last_fire = %fire, dry_run = r.dry_run,
        planned = r.planned, already_planned = r.already_planned, nothing_to_say = r.skipped,
        opted_out = r.opted_out, suppressed = r.suppressed, missed = r.missed, invalid_timezones = r.invalid_timezones,
        "planned"
    );
}
