//! `overdue_morning`: one email per task that became overdue, at 08:00 in the owner's zone the
//! first morning after its due time, if it is still open then. Off unless switched on
//! (`[schedules.overdue_morning] enabled = true`): it tells, task by task, what
//! `overdue_summary` tells in one email.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ItemKind, When, sample_task};
use crate::{
    payload::Task,
    source::{Source, TaskPage, TaskRow},
};

pub struct OverdueMorning;

impl ItemKind for OverdueMorning {
    const NAME: &'static str = "overdue_morning";
    const ABOUT: &'static str =
        "one email per task still open the morning after it fell due, at 08:00 in the owner's zone";
    const WHEN: When = When::HourAfter(8);
    const ON_BY_DEFAULT: bool = false;

    async fn items(&self, source: &Source, page: &TaskPage<'_>) -> anyhow::Result<Vec<TaskRow>> {
        source
            .open_tasks_due_between(page)
            .await
            .context("cannot read the tasks that fell due")
    }

    fn compose<'a>(&self, task: &'a TaskRow) -> impl Serialize + Send + 'a {
        Fields {
            task: Task::from(task),
        }
    }

    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, TaskRow)> {
        let due = |hours: i64| {
            let mut t = sample_task(at);
            t.due_at = Some(at - chrono::Duration::hours(hours));
            t
        };
        vec![("due_last_evening", due(15)), ("due_two_days_ago", due(40))]
    }
}

/// What the templates read: the `task` (`title`, `due_at`, `path`).
#[derive(Serialize)]
struct Fields<'a> {
    task: Task<'a>,
}
