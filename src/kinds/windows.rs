//! Each user's window of time, for kinds that read a table for a whole batch of users in one
//! query and keep, for each user, the rows inside their own window.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Recipient;
use crate::source::{Source, TaskRow};

/// Each user's `[start, end)` window of time, to read a table for the whole batch in one query
/// over [`Windows::span`] and keep for each user only the rows inside their own window.
#[derive(Debug, Clone)]
pub struct Windows(Vec<(String, DateTime<Utc>, DateTime<Utc>)>);

impl Windows {
    /// `window(tz)` for each user, in their own zone.
    pub fn new(
        users: &[Recipient],
        window: impl Fn(Tz) -> (DateTime<Utc>, DateTime<Utc>),
    ) -> Windows {
        Windows(
            users
                .iter()
                .map(|u| {
                    let (start, end) = window(u.tz);
                    (u.id.clone(), start, end)
                })
                .collect(),
        )
    }

    /// The users, for the query's `user_id IN (…)`.
    pub fn users(&self) -> Vec<String> {
        self.0.iter().map(|w| w.0.clone()).collect()
    }

    /// From the earliest start to the latest end: the query's range. Empty without users.
    pub fn span(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.0.iter().map(|w| w.1).min();
        let end = self.0.iter().map(|w| w.2).max();
        match (start, end) {
            (Some(s), Some(e)) => (s, e),
            _ => (DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH),
        }
    }

    /// The rows whose instant is inside their owner's window, by owner, in the query's order.
    /// `key` gives a row's owner and instant; a row without an instant is left out.
    pub fn keep<R>(
        &self,
        rows: Vec<R>,
        key: impl Fn(&R) -> (String, Option<DateTime<Utc>>),
    ) -> HashMap<String, Vec<R>> {
        let windows: HashMap<&str, (DateTime<Utc>, DateTime<Utc>)> = self
            .0
            .iter()
            .map(|(id, s, e)| (id.as_str(), (*s, *e)))
            .collect();
        let mut out: HashMap<String, Vec<R>> = HashMap::new();
        for row in rows {
            let (owner, t) = key(&row);
            if let (Some(&(start, end)), Some(t)) = (windows.get(owner.as_str()), t)
                && t >= start
                && t < end
            {
                out.entry(owner).or_default().push(row);
            }
        }
        out
    }
}

/// Open tasks past their due time at `at` (and not completed), by owner.
pub async fn overdue_tasks(
    source: &Source,
    users: &[Recipient],
    at: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, Vec<TaskRow>>> {
    use anyhow::Context;
    let overdue = Windows::new(users, |_| (DateTime::UNIX_EPOCH, at));
    let (from, to) = overdue.span();
    let tasks = source
        .open_tasks_due(&overdue.users(), from, to)
        .await
        .context("cannot read overdue tasks")?;
    Ok(overdue.keep(tasks, |t| (t.user_id.clone(), t.due_at)))
}
