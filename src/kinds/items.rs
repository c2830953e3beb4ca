//! Kinds relative to each task's own time rather than to a wall-clock time: "30 minutes before
//! each task is due", "the morning after a task became overdue, at 08:00 in the owner's zone".
//! Implement [`ItemKind`] and list the kind in `KINDS` as `&Items(MyKind)`.
//!
//! The planner plans such an email once, at its instant ([`When::instant`]): on every tick it
//! reads the open tasks whose instant falls between the schedule's watermark and now, keyed on
//! the task and its due time. An instant missed by more than the catch-up window (Herald was
//! down) is recorded as missed under its own key, which blocks nothing else; a task whose due
//! time moves gets a new key, and so one email for the new time.

use std::future::Future;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use super::{AnyKind, DefaultSchedule, Recipient, Sample, sample_at, sample_recipient};
use crate::{
    domain::When,
    payload::Payload,
    source::{Source, TaskPage, TaskRow},
};

/// A kind that sends one email per task, at an instant given by the task's due time.
pub trait ItemKind: Send + Sync + 'static {
    /// As [`super::EmailKind::NAME`].
    const NAME: &'static str;
    /// As [`super::EmailKind::ABOUT`].
    const ABOUT: &'static str;
    /// When each email goes, unless `[schedules.<NAME>] before` says (for [`When::Before`]).
    const WHEN: When;
    /// Whether its schedule runs unless the configuration says: `false` for a kind that
    /// overlaps another (an operator turns it on with `enabled = true`).
    const ON_BY_DEFAULT: bool = true;
    /// As [`super::EmailKind::LINK`], for a task the app gives no path of its own.
    const LINK: &'static str = "/tasks";

    /// A page of the open tasks due in `(page.from, page.to]` (of `page.owner` only, when
    /// given), by due time then id, after `page.after`, at most `page.limit`.
    fn items(
        &self,
        source: &Source,
        page: &TaskPage<'_>,
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

    fn link(&self) -> &'static str {
        K::LINK
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

    fn relative(&self) -> Option<When> {
        Some(K::WHEN)
    }

    fn on_by_default(&self) -> bool {
        K::ON_BY_DEFAULT
    }

    fn items<'a>(
        &'a self,
        source: &'a Source,
        page: &'a TaskPage<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<TaskRow>>> {
        Box::pin(self.0.items(source, page))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono_tz::Tz;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_morning_after_is_the_first_local_hour_strictly_after_the_due_time() {
        let tokyo = chrono_tz::Asia::Tokyo; // +09:00: 08:00 local is 23:00 UTC the day before
        let morning = When::HourAfter(8);
        // Due 07:30 local: the same morning, half an hour later.
        assert_eq!(
            morning.instant(at("2026-11-22T22:30:00Z"), tokyo),
            at("2026-11-22T23:00:00Z")
        );
        // Due at 08:00 sharp, or in the evening: the next morning.
        assert_eq!(
            morning.instant(at("2026-11-22T23:00:00Z"), tokyo),
            at("2026-11-23T23:00:00Z")
        );
        assert_eq!(
            morning.instant(at("2026-11-23T09:00:00Z"), tokyo),
            at("2026-11-23T23:00:00Z")
        );
        // New York on the night it falls back: the 08:00 after is EST.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            morning.instant(at("2026-11-01T03:00:00Z"), ny),
            at("2026-11-01T13:00:00Z")
        );
        // An hour a spring-forward skips is taken right after the gap.
        assert_eq!(
            When::HourAfter(2).instant(at("2026-03-29T00:00:00Z"), chrono_tz::Europe::Paris),
            at("2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn the_due_window_holds_every_zones_instants() {
        let (from, to) = (at("2026-11-23T00:00:00Z"), at("2026-11-23T00:05:00Z"));
        let morning = When::HourAfter(8);
        let (lo, hi) = morning.due_window(from, to);
        for zone in ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "UTC"] {
            let tz: Tz = zone.parse().unwrap();
            // Every due time whose instant is in (from, to] is inside the window read.
            let mut due = from - chrono::Duration::hours(30);
            while due <= to {
                let i = morning.instant(due, tz);
                if i > from && i <= to {
                    assert!(due > lo && due <= hi, "{zone}: {due} outside ({lo}, {hi}]");
                }
                due += chrono::Duration::minutes(5);
            }
        }
        let soon = When::Before(Duration::from_secs(1800));
        assert_eq!(
            soon.due_window(from, to),
            (
                from + chrono::Duration::minutes(30),
                to + chrono::Duration::minutes(30)
            )
        );
    }
}
