//! `overdue_summary`: the tasks past their due time and not completed, every day at 07:00.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

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

    fn compose(&self, tz: Tz, at: DateTime<Utc>, tasks: &Vec<TaskRow>) -> Value {
        json!({
            "date": at.with_timezone(&tz).format("%A %-d %B %Y").to_string(),
            "tasks": tasks.iter().map(|t| Task::at_path(&t.title, t.due_at, t.link_path.as_deref(), tz, at)).collect::<Vec<_>>(),
        })
    }

    fn sample(&self, at: DateTime<Utc>) -> Vec<TaskRow> {
        vec![sample_task(at)]
    }
}
