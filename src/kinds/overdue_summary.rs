//! `overdue_summary`: the tasks past their due time and not completed, every day at 07:00.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{DefaultSchedule, EmailKind, Recipient, overdue_tasks, sample_task};
use crate::{
    payload::Task,
    source::{Source, TaskRow},
};

pub struct OverdueSummary;

impl EmailKind for OverdueSummary {
    const NAME: &'static str = "overdue_summary";
    const ABOUT: &'static str = "the tasks past their due time and not completed";
    const SCHEDULE: DefaultSchedule = DefaultSchedule::recipient("0 0 7 * * *");
    const LINK: &'static str = "/tasks?filter=overdue";

    /// The open tasks past their due time.
    type Data = Vec<TaskRow>;

    async fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Vec<TaskRow>>> {
        overdue_tasks(source, users, at).await
    }

    fn has_news(&self, tasks: &Vec<TaskRow>) -> bool {
        !tasks.is_empty()
    }

    fn compose<'a>(
        &self,
        _tz: Tz,
        _at: DateTime<Utc>,
        tasks: &'a Vec<TaskRow>,
    ) -> impl Serialize + Send + 'a {
        Fields {
            tasks: tasks.iter().map(Task::from).collect(),
        }
    }

    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, Vec<TaskRow>)> {
        let due = |minutes: i64, title: &str| {
            let mut t = sample_task(at);
            t.due_at = Some(at - chrono::Duration::minutes(minutes));
            t.title = title.into();
            t.link_path = Some(format!("/tasks/{minutes}"));
            t
        };
        vec![
            ("one_task", vec![sample_task(at)]),
            (
                "three_tasks_one_just_due",
                vec![
                    due(5 * 24 * 60, "Renew the passport"),
                    due(26 * 60, "Reply to Ana"),
                    due(30, "Pay rent"),
                ],
            ),
        ]
    }
}

/// What the templates read: the overdue `tasks`.
#[derive(Serialize)]
struct Fields<'a> {
    tasks: Vec<Task<'a>>,
}
