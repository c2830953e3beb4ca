//! Kinds relative to each task's own time rather than to a wall-clock time: "30 minutes before
//! each task is due". Implement [`ItemKind`] and list the kind in `KINDS` as `&Items(MyKind)`.
//!
//! The planner plans such an email once, at its instant (the task's due time less the kind's
//! `before`): on every tick it reads the open tasks whose instant falls between the schedule's
//! watermark and now, keyed on the task and its due time. An instant missed by more than the
//! catch-up window (Herald was down) is recorded as missed under its own key, which blocks
//! nothing else; a task whose due time moves gets a new key, and so one email for the new time.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use super::{AnyKind, DefaultSchedule, Recipient, Sample, sample_at, sample_recipient};
use crate::{
    payload::Payload,
    source::{Source, TaskRow},
};

/// A kind that sends one email per task, a fixed time before the task is due.
pub trait ItemKind: Send + Sync + 'static {
    /// As [`super::EmailKind::NAME`].
    const NAME: &'static str;
    /// As [`super::EmailKind::ABOUT`].
    const ABOUT: &'static str;
    /// How long before the due time the email goes, unless `[schedules.<NAME>] before` says.
    const BEFORE: Duration;

    /// The open tasks due in `(from, to]` (of `owner` only, when given), by due time.
    fn items(
        &self,
        source: &Source,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        owner: Option<&str>,
    ) -> impl Future<Output = anyhow::Result<Vec<TaskRow>>> + Send;

    /// The fields the templates read about one task (see [`super::EmailKind::compose`]); times
    /// as instants, written by the templates' filters when the email is sent.
    fn compose<'a>(&self, item: &'a TaskRow) -> impl Serialize + Send + 'a;

    /// Named tasks for the template check and the golden test, as
    /// [`super::EmailKind::samples`]; the sample email is planned for `at`.
    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, TaskRow)>;
}

/// An [`ItemKind`] as an entry of `KINDS`.
pub struct Items<K>(pub K);

impl<K: ItemKind> AnyKind for Items<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn about(&self) -> &'static str {
        K::ABOUT
    }

    /// Never fired by a cron: the planner looks for tasks on every tick. The configuration
    /// refuses `cron` and `timezone` for such a kind.
    fn schedule(&self) -> DefaultSchedule {
        DefaultSchedule::recipient("")
    }

    fn compose_all<'a>(
        &'a self,
        _source: &'a Source,
        _users: &'a [super::Recipient],
        _at: DateTime<Utc>,
        _date: &'a (dyn Fn(usize) -> chrono::NaiveDate + Send + Sync),
    ) -> BoxFuture<'a, anyhow::Result<Vec<(usize, String, Payload)>>> {
        Box::pin(async {
            anyhow::bail!(
                "{} is sent relative to each task's due time, not at a fire",
                K::NAME
            )
        })
    }

    fn samples(&self) -> Vec<Sample> {
        let at = sample_at();
        let to = sample_recipient();
        self.0
            .samples(at)
            .iter()
            .map(|(name, item)| Sample {
                name,
                payload: Payload::new(K::NAME, &to.user, at, &self.0.compose(item)),
                has_news: true,
            })
            .collect()
    }

    fn before(&self) -> Option<Duration> {
        Some(K::BEFORE)
    }

    fn items<'a>(
        &'a self,
        source: &'a Source,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<TaskRow>>> {
        Box::pin(self.0.items(source, from, to, owner))
    }

    fn compose_item(&self, to: &Recipient, at: DateTime<Utc>, item: &TaskRow) -> Option<Payload> {
        Some(Payload::new(K::NAME, &to.user, at, &self.0.compose(item)))
    }
}

/// The end of an item email's dedup key: the task and its due time, so that a task whose due
/// time moves is announced again for the new time, and never twice for one time.
pub fn item_key(item: &TaskRow) -> String {
    let due = item
        .due_at
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    format!("{}:{due}", item.id)
}
