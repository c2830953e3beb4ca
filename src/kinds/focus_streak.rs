//! `focus_streak`: at 20:00 in each user's zone, the day's focus (minutes and sessions) and the
//! streak of consecutive local days with a session. Only for users who focused that day.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{DefaultSchedule, EmailKind, Recipient, Windows};
use crate::{domain, source::Source};

pub struct FocusStreak;

/// One user's focus on the local day of the email, and their streak.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Day {
    pub minutes: i64,
    pub sessions: usize,
    /// Consecutive local days with a session, ending with this one.
    pub streak: u64,
}

/// Earlier days read per query while a streak goes on.
const DAYS_PER_QUERY: u64 = 28;

impl EmailKind for FocusStreak {
    const NAME: &'static str = "focus_streak";
    const ABOUT: &'static str = "minutes and sessions of focus that day and the streak of consecutive days with a session, only after a day with focus";
    const SCHEDULE: DefaultSchedule = DefaultSchedule::recipient("0 0 20 * * *");
    const LINK: &'static str = "/focus";

    type Data = Day;

    async fn load(
        &self,
        source: &Source,
        users: &[Recipient],
        at: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Day>> {
        // The local day so far, in each user's zone.
        let today = Windows::new(users, |tz| {
            (
                domain::start_of_local_day(tz, domain::local_date(tz, at)),
                at,
            )
        });
        let (from, to) = today.span();
        let sessions = source
            .focus_sessions(&today.users(), from, to)
            .await
            .context("cannot read today's focus sessions")?;
        let mut days: HashMap<String, Day> = today
            .keep(sessions, |f| (f.user_id.clone(), Some(f.started_at)))
            .into_iter()
            .map(|(id, s)| {
                let minutes = s.iter().map(|f| f.minutes).sum();
                let day = Day {
                    minutes,
                    sessions: s.len(),
                    streak: 1,
                };
                (id, day)
            })
            .collect();

        // The streak: the days before, a few weeks per query, for as long as one goes on.
        let mut going: Vec<Recipient> = users
            .iter()
            .filter(|u| days.contains_key(&u.id))
            .cloned()
            .collect();
        let mut looked_back = 0;
        while !going.is_empty() {
            let earlier = Windows::new(&going, |tz| {
                let today = domain::local_date(tz, at);
                (
                    domain::start_of_local_day(tz, before(today, looked_back + DAYS_PER_QUERY)),
                    domain::start_of_local_day(tz, before(today, looked_back)),
                )
            });
            let (from, to) = earlier.span();
            let sessions = source
                .focus_sessions(&earlier.users(), from, to)
                .await
                .context("cannot read earlier focus sessions")?;
            let mut by_user = earlier.keep(sessions, |f| (f.user_id.clone(), Some(f.started_at)));
            going.retain(|u| {
                let today = domain::local_date(u.tz, at);
                let focused: HashSet<NaiveDate> = by_user
                    .remove(&u.id)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| domain::local_date(u.tz, f.started_at))
                    .collect();
                let run = (1..=DAYS_PER_QUERY)
                    .take_while(|n| focused.contains(&before(today, looked_back + n)))
                    .count() as u64;
                if let Some(day) = days.get_mut(&u.id) {
                    day.streak += run;
                }
                run == DAYS_PER_QUERY
            });
            looked_back += DAYS_PER_QUERY;
        }
        Ok(days)
    }

    fn has_news(&self, day: &Day) -> bool {
        day.sessions > 0
    }

    fn compose<'a>(&self, _tz: Tz, _at: DateTime<Utc>, day: &'a Day) -> impl Serialize + Send + 'a {
        Fields {
            focus_minutes: day.minutes,
            focus_sessions: day.sessions,
            streak_days: day.streak,
        }
    }

    fn samples(&self, _at: DateTime<Utc>) -> Vec<(&'static str, Day)> {
        vec![
            (
                "streak_of_four",
                Day {
                    minutes: 95,
                    sessions: 3,
                    streak: 4,
                },
            ),
            (
                "first_day_one_minute",
                Day {
                    minutes: 1,
                    sessions: 1,
                    streak: 1,
                },
            ),
        ]
    }
}

/// What the templates read (the day is the one of `at`).
#[derive(Serialize)]
struct Fields {
    focus_minutes: i64,
    focus_sessions: usize,
    streak_days: u64,
}

/// The date `n` days before `date`.
fn before(date: NaiveDate, n: u64) -> NaiveDate {
    date.checked_sub_days(Days::new(n))
        .unwrap_or(NaiveDate::MIN)
}
