//! `due_soon`: one email per task, shortly before it is due (2 hours by default; `before` in
//! `[schedules.due_soon]`), with the time left written when the email is sent.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ItemKind, When, sample_task};
use crate::{
    payload::Task,
    source::{Source, TaskPage, TaskRow},
};

pub struct DueSoon;

impl ItemKind for DueSoon {
    const NAME: &'static str = "due_soon";
    const ABOUT: &'static str =
        "one email per task, a while before it is due (2 hours unless `before` says)";
    const WHEN: When = When::Before(Duration::from_secs(2 * 60 * 60));

    async fn items(&self, source: &Source, page: &TaskPage<'_>) -> anyhow::Result<Vec<TaskRow>> {
        source
            .open_tasks_due_between(page)
            .await
            .context("cannot read the tasks falling due")
    }

    fn compose<'a>(&self, task: &'a TaskRow) -> impl Serialize + Send + 'a {
        Fields {
            task: Task::from(task),
        }
    }

    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, TaskRow)> {
        let due = |minutes: i64, path: Option<&str>| {
            let mut t = sample_task(at);
            t.due_at = Some(at + chrono::Duration::minutes(minutes));
            t.link_path = path.map(str::to_owned);
            t
        };
        vec![
            ("in_two_hours_with_a_link", due(120, Some("/tasks/1"))),
            ("in_ten_minutes", due(10, None)),
        ]
    }
}

/// What the templates read: the `task` (`title`, `due_at`, `path`).
#[derive(Serialize)]
struct Fields<'a> {
    task: Task<'a>,
}
