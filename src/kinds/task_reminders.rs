//! `task_reminders`: the tasks due tomorrow, "tomorrow" in the user's zone, every day at 09:00.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{DefaultSchedule, EmailKind, Recipient, Windows, sample_task};
use crate::{
    domain,
    payload::Task,
    source::{Source, TaskRow},
};

pub struct TaskReminders;

impl EmailKind for TaskReminders {
    const NAME: &'static str = "task_reminders";
    const ABOUT: &'static str = "the tasks due tomorrow, \"tomorrow\" in the user's time zone";
    const SCHEDULE: DefaultSchedule = DefaultSchedule::recipient("0 0 9 * * *");
    const LINK: &'static str = "/tasks";

    /// The open tasks due tomorrow.
    type Data = Vec<TaskRow>;

    async fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Vec<TaskRow>>> {
        let tomorrow = Windows::new(users, |tz| {
            let (_, start, end) = domain::tomorrow(tz, at);
            (start, end)
        });
        let (from, to) = tomorrow.span();
        let tasks = source
            .open_tasks_due(&tomorrow.users(), from, to)
            .await
            .context("cannot read the tasks due tomorrow")?;
        Ok(tomorrow.keep(tasks, |t| (t.user_id.clone(), t.due_at)))
    }

    fn has_news(&self, tasks: &Vec<TaskRow>) -> bool {
        !tasks.is_empty()
    }

    fn compose<'a>(
        &self,
        tz: Tz,
        at: DateTime<Utc>,
        tasks: &'a Vec<TaskRow>,
    ) -> impl Serialize + Send + 'a {
        let (date, _, _) = domain::tomorrow(tz, at);
        Fields {
            date,
            tasks: tasks.iter().map(Task::from).collect(),
        }
    }

    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, Vec<TaskRow>)> {
        let tomorrow = |hours: i64, title: &str| {
            let mut t = sample_task(at + chrono::Duration::hours(hours));
            t.due_at = t.due_at.map(|d| d + chrono::Duration::days(2));
            t.title = title.into();
            t
        };
        vec![
            ("one_task", vec![tomorrow(16, "Write the <report>")]),
            (
                "two_tasks",
                vec![
                    tomorrow(16, "Call the bank"),
                    tomorrow(18, "Ship <v2> & celebrate"),
                ],
            ),
        ]
    }
}

/// What the templates read: `date` (tomorrow, an ISO date) and `tasks`.
#[derive(Serialize)]
struct Fields<'a> {
    date: chrono::NaiveDate,
    tasks: Vec<Task<'a>>,
}
