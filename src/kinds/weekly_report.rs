//! `weekly_report`: tasks completed, focus minutes and what is still overdue over the 7 local
//! days before Sunday 17:00.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{DefaultSchedule, EmailKind, Recipient, Windows, overdue_tasks, sample_task};
use crate::{
    domain,
    payload::Task,
    source::{FocusRow, Source, TaskRow},
};

pub struct WeeklyReport;

/// One user's week, [`domain::week_before`] the report, and what is overdue at its end.
#[derive(Debug, Default)]
pub struct Week {
    pub overdue: Vec<TaskRow>,
    pub completed: Vec<TaskRow>,
    pub focus: Vec<FocusRow>,
}

impl EmailKind for WeeklyReport {
    const NAME: &'static str = "weekly_report";
    const ABOUT: &'static str = "tasks completed, focus minutes and what is still overdue over the 7 local days before Sunday 17:00";
    const SCHEDULE: DefaultSchedule = DefaultSchedule::recipient("0 0 17 * * Sun");

    type Data = Week;

    async fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Week>> {
        let week = Windows::new(users, |tz| domain::week_before(tz, at));
        let (from, to) = week.span();
        let completed = source
            .tasks_completed(&week.users(), from, to)
            .await
            .context("cannot read the tasks completed in the week")?;
        let focus = source
            .focus_sessions(&week.users(), from, to)
            .await
            .context("cannot read the week's focus sessions")?;
        let mut weeks: HashMap<String, Week> = HashMap::new();
        for (id, tasks) in overdue_tasks(source, users, at).await? {
            weeks.entry(id).or_default().overdue = tasks;
        }
        for (id, tasks) in week.keep(completed, |t| (t.user_id.clone(), t.completed_at)) {
            weeks.entry(id).or_default().completed = tasks;
        }
        for (id, sessions) in week.keep(focus, |f| (f.user_id.clone(), Some(f.started_at))) {
            weeks.entry(id).or_default().focus = sessions;
        }
        Ok(weeks)
    }

    fn has_news(&self, w: &Week) -> bool {
        !(w.overdue.is_empty() && w.completed.is_empty() && w.focus.is_empty())
    }

    fn compose(&self, tz: Tz, at: DateTime<Utc>, w: &Week) -> Value {
        let day = |t: DateTime<Utc>| t.with_timezone(&tz).format("%a %-d %b").to_string();
        let (from, to) = domain::week_before(tz, at);
        let minutes: i64 = w.focus.iter().map(|f| f.minutes).sum();
        json!({
            "week_start": day(from),
            "week_end": day(to),
            "completed": w.completed.iter().map(|t| json!({
                "title": t.title,
                "completed": t.completed_at.map(day),
            })).collect::<Vec<_>>(),
            "focus_minutes": minutes,
            "focus_sessions": w.focus.len(),
            "overdue": w.overdue.iter().map(|t| Task::at_path(&t.title, t.due_at, t.link_path.as_deref(), tz, at)).collect::<Vec<_>>(),
        })
    }

    fn sample(&self, at: DateTime<Utc>) -> Week {
        let open = sample_task(at);
        let mut done = open.clone();
        done.completed_at = Some(at - chrono::Duration::days(1));
        Week {
            overdue: vec![open],
            completed: vec![done],
            focus: vec![FocusRow {
                user_id: "1".into(),
                started_at: at,
                minutes: 25,
            }],
        }
    }
}
