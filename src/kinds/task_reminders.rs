//! `task_reminders`: the tasks due tomorrow, "tomorrow" in the user's zone, every day at 09:00.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

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

    fn compose(&self, tz: Tz, at: DateTime<Utc>, tasks: &Vec<TaskRow>) -> Value {
        let (date, _, _) = domain::tomorrow(tz, at);
        json!({
            "date": date.format("%A %-d %B %Y").to_string(),
            "tasks": tasks.iter().map(|t| Task::at_path(&t.title, t.due_at, t.link_path.as_deref(), tz, at)).collect::<Vec<_>>(),
        })
    }

    fn sample(&self, at: DateTime<Utc>) -> Vec<TaskRow> {
        vec![sample_task(at)]
    }
}
