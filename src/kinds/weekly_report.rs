//! `weekly_report`: tasks completed, focus minutes and what is still overdue over the 7 local
//! days before Sunday 17:00.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{DefaultSchedule, EmailKind, Recipient, Windows, sample_task};
use crate::{
    domain,
    payload::{Instant, Task},
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
    const LINK: &'static str = "/reports/weekly";

    type Data = Week;

    async fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Week>> {
        let week = Windows::new(users, |tz| domain::week_before(tz, at));
        let (from, to) = week.span();
        let owners = week.users();
        let tasks = source
            .open_due_or_completed(&owners, at, from, to)
            .await
            .context("cannot read the week's completed and overdue tasks")?;
        let focus = source
            .focus_sessions(&owners, from, to)
            .await
            .context("cannot read the week's focus sessions")?;
        let (open, completed): (Vec<TaskRow>, Vec<TaskRow>) =
            tasks.into_iter().partition(|t| t.completed_at.is_none());
        let mut weeks: HashMap<String, Week> = HashMap::new();
        let overdue = Windows::new(users, |_| (DateTime::UNIX_EPOCH, at));
        for (id, tasks) in overdue.keep(open, |t| (t.user_id.clone(), t.due_at)) {
            weeks.entry(id).or_default().overdue = tasks;
        }
        let mut completed = completed;
        completed.sort_by(|a, b| {
            (&a.user_id, a.completed_at, &a.id).cmp(&(&b.user_id, b.completed_at, &b.id))
        });
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

    fn compose<'a>(&self, tz: Tz, at: DateTime<Utc>, w: &'a Week) -> impl Serialize + Send + 'a {
        let (from, to) = domain::week_before(tz, at);
        Fields {
            week_start: Instant(from),
            week_end: Instant(to),
            completed: w
                .completed
                .iter()
                .map(|t| Completed {
                    title: &t.title,
                    completed_at: t.completed_at.map(Instant),
                })
                .collect(),
            focus_minutes: w.focus.iter().map(|f| f.minutes).sum(),
            focus_sessions: w.focus.len(),
            overdue: w.overdue.iter().map(Task::from).collect(),
        }
    }

    fn samples(&self, at: DateTime<Utc>) -> Vec<(&'static str, Week)> {
        let open = sample_task(at);
        let mut done = open.clone();
        done.completed_at = Some(at - chrono::Duration::days(1));
        let session = |days: i64, minutes: i64| FocusRow {
            user_id: "1".into(),
            started_at: at - chrono::Duration::days(days),
            minutes,
        };
        vec![
            (
                "busy_week",
                Week {
                    overdue: vec![open],
                    completed: vec![done.clone(), done],
                    focus: vec![session(1, 25), session(3, 50)],
                },
            ),
            (
                "one_focus_session",
                Week {
                    focus: vec![session(2, 1)],
                    ..Week::default()
                },
            ),
        ]
    }
}

/// What the templates read: the week is `[week_start, week_end)`, seven local days to the
/// report's instant, so its ends are written with their time ("Sun 15 Nov, 17:00").
#[derive(Serialize)]
struct Fields<'a> {
    week_start: Instant,
    week_end: Instant,
    completed: Vec<Completed<'a>>,
    focus_minutes: i64,
    focus_sessions: usize,
    overdue: Vec<Task<'a>>,
}

#[derive(Serialize)]
struct Completed<'a> {
    title: &'a str,
    completed_at: Option<Instant>,
}
