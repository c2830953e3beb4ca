//! Planning a kind relative to each task's time (`kinds::ItemKind`, such as `due_soon`): one
//! email per task at its own instant, the task's due time less the schedule's `before`.
//!
//! On every tick the planner reads the open tasks whose instant is in `(watermark, now]`, so
//! each instant is planned once, by whichever process holds the schedule's lock, and the
//! watermark moves in the same transaction as for a schedule at a wall-clock time. Each email's
//! key is the task and its due time (`due_soon:42:7:2026-11-24T09:00:00Z`): a task whose due time
//! moves is announced again for its new time, and an instant missed while Herald was down (by
//! more than the catch-up window) is recorded as missed under its own key, where it blocks
//! nothing that comes after it. Instants are absolute, so a DST change moves no reminder: only
//! the words of the email, written in the owner's zone when it is sent, follow the local clock.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::{
    domain::When,
    kinds::{Kind, items::item_key},
    source::{TaskPage, TaskRow},
};

/// Owners looked up per query, as a page of users elsewhere.
const OWNERS_PER_QUERY: usize = 1000;

/// Tasks read per query.
const ITEMS_PER_PAGE: usize = 1000;

/// Plans every email of `schedule` whose instant is in `(since, now]`.
pub(super) async fn plan_items_due(
    store: &Store,
    schedule: &ScheduleSettings,
    when: When,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut PlanReport,
) -> anyhow::Result<()> {
    let plan = ItemPlan {
        schedule,
        when,
        instants: (since, now),
        now,
        manual: false,
        dry_run: false,
    };
    plan_pages(store, &plan, None, report).await
}

/// Plans by hand, as of `opts.at`, the emails that are current then: their instant has come,
/// within [`When::current_for`] (for `due_soon`, the tasks not due yet), for every user or one.
pub(super) async fn plan_items_by_hand(
    store: &Store,
    schedule: &ScheduleSettings,
    when: When,
    opts: &PlanOptions,
    now: DateTime<Utc>,
    report: &mut PlanReport,
) -> anyhow::Result<()> {
    let plan = ItemPlan {
        schedule,
        when,
        instants: (opts.at - when.current_for(), opts.at),
        now,
        manual: true,
        dry_run: opts.dry_run,
    };
    plan_pages(store, &plan, opts.user_id.as_deref(), report).await
}

/// Reads the tasks of the plan's window a page at a time (by due time, then id) and plans each
/// page: however many tasks fall due, the planner holds one page.
async fn plan_pages(
    store: &Store,
    plan: &ItemPlan<'_>,
    owner: Option<&str>,
    report: &mut PlanReport,
) -> anyhow::Result<()> {
    let (from, to) = plan.when.due_window(plan.instants.0, plan.instants.1);
    let mut page = TaskPage {
        from,
        to,
        owner,
        after: None,
        limit: ITEMS_PER_PAGE,
    };
    loop {
        let items = Kind::of(plan.schedule).items(&store.source, &page).await?;
        let last = items.last().and_then(|t| Some((t.due_at?, t.id.clone())));
        let full = items.len() == ITEMS_PER_PAGE;
        plan_items(store, plan, items, report).await?;
        match last {
            Some(after) if full => page.after = Some(after),
            _ => return Ok(()),
        }
    }
}

struct ItemPlan<'a> {
    schedule: &'a ScheduleSettings,
    when: When,
    /// The instants planned: `(from, to]`.
    instants: (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    /// Planned by hand: keyed with [`manual_dedup_key`], due now, never missed.
    manual: bool,
    dry_run: bool,
}

/// One email per item whose owner is an active user who has not opted out of the kind.
async fn plan_items(
    store: &Store,
    plan: &ItemPlan<'_>,
    items: Vec<TaskRow>,
    report: &mut PlanReport,
) -> anyhow::Result<()> {
    let kind = Kind::of(plan.schedule);
    let mut owners: Vec<String> = items.iter().map(|t| t.user_id.clone()).collect();
    owners.sort();
    owners.dedup();
    let mut users: HashMap<String, UserRow> = HashMap::new();
    let mut opted_out: HashSet<String> = HashSet::new();
    let mut suppressed: HashSet<String> = HashSet::new();
    for chunk in owners.chunks(OWNERS_PER_QUERY) {
        for user in store
            .source
            .users(chunk)
            .await
            .context("cannot read the tasks' owners from herald_users")?
        {
            users.insert(user.id.clone(), user);
        }
        opted_out.extend(
            store
                .opted_out_among(kind.name(), chunk)
                .await
                .context("cannot read the opt-outs")?,
        );
    }
    let emails: Vec<String> = users.values().map(|u| u.email.clone()).collect();
    for chunk in emails.chunks(OWNERS_PER_QUERY) {
        suppressed.extend(
            store
                .suppressed_among(chunk)
                .await
                .context("cannot read the suppression list")?,
        );
    }

    let left = Left {
        opted_out: &opted_out,
        suppressed: &suppressed,
    };
    let (mut queued, mut missed) = (Vec::new(), Vec::new());
    for item in &items {
        let Some(due) = item.due_at else { continue };
        let in_window = |instant| instant > plan.instants.0 && instant <= plan.instants.1;
        let Some(user) = users.get(&item.user_id) else {
            // Not an active user of the app (any more): nobody to tell.
            if in_window(plan.when.instant(due, plan.schedule.fallback_timezone)) {
                report.skipped += 1;
            }
            continue;
        };
        let tz = user_zone(plan.schedule, user, report);
        let instant = plan.when.instant(due, tz);
        if !in_window(instant) {
            // Read for another zone's window: not this one's yet, or planned before.
            continue;
        }
        if left.count(user, report) {
            report.skipped += 1;
            continue;
        }
        let late = (!plan.manual)
            .then(|| super::missed(plan.schedule, instant, tz, plan.now))
            .flatten();
        let to = Recipient::of(user, tz);
        let Some(payload) = kind.compose_item(&to, instant, item) else {
            continue;
        };
        let key = item_key(item);
        let row = NewDelivery {
            status: if late.is_some() {
                DeliveryStatus::Skipped
            } else {
                DeliveryStatus::Queued
            },
            note: late.clone(),
            kind: kind.name().to_owned(),
            dedup_key: planned_key(plan.manual, &plan.schedule.name, &user.id, &key),
            user_id: user.id.clone(),
            recipient: user.email.clone(),
            payload: payload.into_json(),
            planned_for: instant,
            due_at: if plan.manual {
                plan.now
            } else {
                instant.min(plan.now)
            },
        };
        report.fires += 1;
        report.last_fire = report.last_fire.max(Some(instant));
        if late.is_some() {
            tracing::warn!(schedule = %plan.schedule.name, task = %item.id, instant = %instant, "{}", late.unwrap_or_default());
            missed.push(row);
        } else {
            queued.push(row);
        }
    }
    settle(store, queued, plan.dry_run, false, report).await?;
    settle(store, missed, plan.dry_run, true, report).await?;
    Ok(())
}
